/* A model's replica: another nn_model over the same layers and the same
 * parameter values, whose gradients go to a buffer of its own. Several
 * replicas run forward and backward on different parts of one batch at once
 * (each in its own nn_ctx), and their gradients are then summed into the
 * model's (src/train/shards.c). */
#ifndef NN_NN_REPLICA_H
#define NN_NN_REPLICA_H

#include "nn/model.h"

/* True when m can be replicated: it keeps no running statistics (a replica
 * would update them from its part of the batch, and they would race). */
bool replica_supported(const nn_model *m);
/* True when a batch of m is best cut between threads, each running a
 * replica on its part: m can be replicated and has no recurrent layer (a
 * recurrent op already shares each time step's batch between the threads;
 * cut, it would only sum in another order). */
bool replica_pays(const nn_model *m);
/* *r over m's layers and parameter values with gradients in grad
 * [m->params.count]; r borrows m's names and spec, so m must outlive it. */
void replica_init(nn_model *r, const nn_model *m, float *grad);
/* Frees what replica_init allocated (not grad, nothing of m's). */
void replica_free(nn_model *r);

#endif
