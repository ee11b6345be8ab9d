#!/usr/bin/python3
"""PyTorch's run of nanoGPT's CPU recipe on Tiny Shakespeare, the reference
for nn's (docs/RESULTS.md, "Transformer"): the GPT of bench/torch_text.py
(4 layers, 4 heads, 128 wide, context 64, no biases, tied head), batch 12,
AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1 on the matrices, warm-up
100 steps then cosine to 1e-4 at --steps (2000), gradients clipped to 1, no
dropout. The validation loss is measured as nn train measures it: the mean
over every side-by-side window of 64 characters of the last 10% of the text
(next-character cross-entropy at all 64 positions), every --eval-every steps.

Two starting points (--init):
  nanogpt  nanoGPT's: every Linear and Embedding N(0, 0.02), the output
           projections of attention and MLP N(0, 0.02 / sqrt(2 layers))
  modules  PyTorch's modules' own, which nn's layers copy: the QKV
           projection Xavier-uniform (nn.MultiheadAttention's in_proj), the
           other Linears U(+-1/sqrt(fan_in)), the token embedding N(0, 0.02)
           (nn's unembed starts the tied matrix so), positions N(0, 0.02)

    /usr/bin/python3 bench/torch_gpt.py [--init nanogpt|modules] [--steps N]
        [--eval-every K] [--seed S] [--threads T]

Prints "step N val_loss X" lines and the run's time and tokens/s."""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_text import GPT, GPT_BATCH, GPT_CONTEXT, GPT_LAYERS, gpt_optimizer  # noqa: E402


def splits():
    text = open("data/tinyshakespeare/input.txt", encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = len(text) * 9 // 10
    return len(chars), ids[:cut], ids[cut:]


def init_weights(net, how):
    for name, p in net.named_parameters():
        if p.dim() < 2:
            continue  # LayerNorm weights stay 1
        if name in ("wte.weight", "wpe.weight"):
            nn.init.normal_(p, 0.0, 0.02)
        elif how == "nanogpt":
            proj = name.endswith("c_proj.weight") or name.endswith("fc_proj.weight")
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * GPT_LAYERS) if proj else 0.02)
        elif name.endswith("c_attn.weight"):
            nn.init.xavier_uniform_(p)
        else:
            bound = 1.0 / math.sqrt(p.shape[1])
            nn.init.uniform_(p, -bound, bound)


def lr_at(step, steps, base=1e-3, low=1e-4, warmup=100):
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return low + 0.5 * (base - low) * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validate(net, val, vocab):
    net.eval()
    count = (val.numel() - 1) // GPT_CONTEXT
    total, n = 0.0, 0
    for first in range(0, count, 64):
        starts = range(first * GPT_CONTEXT, min(count, first + 64) * GPT_CONTEXT, GPT_CONTEXT)
        x = torch.stack([val[s : s + GPT_CONTEXT] for s in starts])
        y = torch.stack([val[s + 1 : s + GPT_CONTEXT + 1] for s in starts])
        loss = nn.functional.cross_entropy(net(x).reshape(-1, vocab), y.reshape(-1), reduction="sum")
        total, n = total + loss.item(), n + y.numel()
    net.train()
    return total / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", choices=("nanogpt", "modules"), default="nanogpt")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    vocab, train, val = splits()
    net = GPT(vocab)
    init_weights(net, a.init)
    opt = gpt_optimizer(net)
    start = time.perf_counter()
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a.steps)
        starts = torch.randint(0, train.numel() - GPT_CONTEXT - 1, (GPT_BATCH,))
        x = torch.stack([train[s : s + GPT_CONTEXT] for s in starts])
        y = torch.stack([train[s + 1 : s + GPT_CONTEXT + 1] for s in starts])
        loss = nn.functional.cross_entropy(net(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            print(f"step {step + 1} train_loss {loss.item():.4f} val_loss {validate(net, val, vocab):.4f}", flush=True)
    seconds = time.perf_counter() - start
    print(f"init {a.init} seed {a.seed} seconds {seconds:.0f} tokens_per_sec {a.steps * GPT_BATCH * GPT_CONTEXT / seconds:.0f}")


if __name__ == "__main__":
    main()
