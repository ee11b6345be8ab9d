/* The context's bump arena: activations, their gradients and saved state of a
 * step are carved from large blocks and all released at once by a reset. When
 * a step outgrows the first block, another is chained on; the next reset
 * replaces the chain by one block of the combined size, so from the second
 * step on a training loop does no allocation at all. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/util.h"

#define NN_ARENA_DEFAULT (16u << 20)
#define NN_ARENA_ALIGN 64 /* a cache line; also what AVX-512 loads like */

static void block_init(nn_arena_block *b, size_t cap) {
    b->mem = aligned_alloc(NN_ARENA_ALIGN, cap);
    if (!b->mem) nn_fatal("out of memory: arena block of %zu bytes", cap);
    b->cap = cap;
    b->used = 0;
}

nn_ctx *nn_ctx_new(size_t arena_bytes) {
    nn_ctx *ctx = nn_xcalloc(1, sizeof *ctx);
    size_t cap = arena_bytes ? arena_bytes : NN_ARENA_DEFAULT;
    cap = (cap + NN_ARENA_ALIGN - 1) / NN_ARENA_ALIGN * NN_ARENA_ALIGN;
    block_init(&ctx->blocks[0], cap);
    ctx->n_blocks = 1;
    ctx->step = 1;
    ctx->grad_enabled = true;
    ctx->training = true;
    return ctx;
}

void nn_ctx_free(nn_ctx *ctx) {
    if (!ctx) return;
    free(ctx->scratch);
    for (int i = 0; i < ctx->n_blocks; i++) free(ctx->blocks[i].mem);
    free(ctx->nodes);
    free(ctx);
}

void nn_ctx_reset(nn_ctx *ctx) {
    if (ctx->n_blocks > 1) {
        size_t total = 0;
        for (int i = 0; i < ctx->n_blocks; i++) {
            total += ctx->blocks[i].cap;
            free(ctx->blocks[i].mem);
        }
        block_init(&ctx->blocks[0], total);
        ctx->n_blocks = 1;
    }
    ctx->blocks[0].used = 0;
    ctx->n_nodes = 0;
    ctx->step++;
    ctx->backward_done = false;
}

void *nn_arena_alloc(nn_ctx *ctx, size_t bytes) {
    size_t need = (bytes + NN_ARENA_ALIGN - 1) / NN_ARENA_ALIGN * NN_ARENA_ALIGN;
    if (need == 0) need = NN_ARENA_ALIGN;
    nn_arena_block *b = &ctx->blocks[ctx->n_blocks - 1];
    if (b->cap - b->used < need) {
        NN_CHECK(ctx->n_blocks < NN_ARENA_MAX_BLOCKS,
                 "arena: more than %d blocks in one step (call nn_ctx_reset between steps)",
                 NN_ARENA_MAX_BLOCKS);
        size_t cap = b->cap * 2 > need ? b->cap * 2 : need;
        b = &ctx->blocks[ctx->n_blocks++];
        block_init(b, cap);
    }
    void *p = b->mem + b->used;
    b->used += need;
    return p;
}

void *nn_ctx_scratch(nn_ctx *ctx, size_t bytes) {
    if (bytes > ctx->scratch_cap) {
        size_t cap = (bytes + NN_ARENA_ALIGN - 1) / NN_ARENA_ALIGN * NN_ARENA_ALIGN;
        free(ctx->scratch);
        ctx->scratch = aligned_alloc(NN_ARENA_ALIGN, cap);
        if (!ctx->scratch) nn_fatal("out of memory: scratch of %zu bytes", cap);
        ctx->scratch_cap = cap;
    }
    return ctx->scratch;
}

nn_arena_mark nn_arena_get_mark(const nn_ctx *ctx) {
    return (nn_arena_mark){.block = ctx->n_blocks - 1, .used = ctx->blocks[ctx->n_blocks - 1].used};
}

/* Blocks chained on since the mark are replaced by one of their combined
 * size (as a reset does), so what follows the mark again fits in one block
 * and the pages of the old ones are not kept. */
void nn_arena_release(nn_ctx *ctx, nn_arena_mark mark) {
    ctx->blocks[mark.block].used = mark.used;
    if (ctx->n_blocks == mark.block + 1) return;
    size_t total = 0;
    for (int i = mark.block + 1; i < ctx->n_blocks; i++) {
        total += ctx->blocks[i].cap;
        free(ctx->blocks[i].mem);
    }
    block_init(&ctx->blocks[mark.block + 1], total);
    ctx->n_blocks = mark.block + 2;
}

bool nn_set_grad_enabled(nn_ctx *ctx, bool on) {
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = on;
    return old;
}

bool nn_grad_enabled(const nn_ctx *ctx) { return ctx->grad_enabled; }

bool nn_set_training(nn_ctx *ctx, bool on) {
    bool old = ctx->training;
    ctx->training = on;
    return old;
}

bool nn_training(const nn_ctx *ctx) { return ctx->training; }
