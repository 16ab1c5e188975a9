/*
 * multiround parameter sets: a model's named weights in one contiguous
 * buffer, saved to and loaded from safetensors checkpoints.
 *
 * A model declares each weight with a name and shape, then finalises the
 * set: one float buffer (and one gradient buffer) is allocated for all of
 * them, and each weight becomes a view into it. An optimizer can then
 * update the whole model through one flat tensor, and a checkpoint stores
 * each weight under its own name.
 *
 *     mr_paramset *ps = mr_paramset_create();
 *     int emb = mr_paramset_declare(ps, "item_embedding", 2, (int64_t[]){N, D}, &err);
 *     mr_paramset_finalize(ps, &err);
 *     mr_tensor *e = mr_paramset_get(ps, emb);
 *     ... optimizer over mr_paramset_flat(ps) ...
 *     mr_paramset_save(ps, "model.safetensors", NULL, 0, &err);
 */
#ifndef MULTIROUND_PARAMS_H
#define MULTIROUND_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mr_paramset mr_paramset;

/* Creates an empty set. Returns NULL when memory is exhausted. */
mr_paramset *mr_paramset_create(void);

/* Frees the set and every weight in it. ps may be NULL. */
void mr_paramset_free(mr_paramset *ps);

/*
 * Declares a weight and returns its index (>= 0), or -1 with err filled
 * when the name is empty, longer than 47 bytes or already declared, the
 * shape is invalid, or the set is already finalised.
 */
int mr_paramset_declare(mr_paramset *ps, const char *name, int ndim,
                        const int64_t *shape, mr_error *err);

/*
 * Allocates one zeroed buffer for every declared weight and its gradient
 * and makes each weight a view into it. Logs the weight count and size.
 */
mr_status mr_paramset_finalize(mr_paramset *ps, mr_error *err);

/* Number of declared weights and the total number of floats. */
int mr_paramset_count(const mr_paramset *ps);
int64_t mr_paramset_numel(const mr_paramset *ps);

/* The weight with this index or name (NULL if none, or before finalise). */
mr_tensor *mr_paramset_get(const mr_paramset *ps, int index);
mr_tensor *mr_paramset_find(const mr_paramset *ps, const char *name);

/* The whole buffer as one 1-D parameter tensor, for optimizers. */
mr_tensor *mr_paramset_flat(const mr_paramset *ps);

/* Sets every gradient to zero. */
void mr_paramset_zero_grad(mr_paramset *ps);

/*
 * Writes every weight as F32 under its name, with metadata pairs (keys and
 * values alternate; count is the number of pairs), atomically.
 */
mr_status mr_paramset_save(const mr_paramset *ps, const char *path,
                           const char *const *metadata, int metadata_pairs,
                           mr_error *err);

/*
 * Reads weights from a safetensors file by name. With require_all, every
 * weight of the set must be in the file; without it, weights missing from
 * the file keep their values (for initialising a larger model from a
 * smaller one) and *loaded, if not NULL, receives how many were read.
 * A weight present with another shape is always an error naming it. The
 * set is unchanged on error.
 */
mr_status mr_paramset_load(mr_paramset *ps, const char *path, bool require_all,
                           int *loaded, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_PARAMS_H */
