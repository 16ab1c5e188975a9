/*
 * Reference values for tests, read from JSON files that scripts under
 * tests/fixtures/ write with PyTorch. A file maps case names to objects of
 * named tensors:
 *
 *   {"layer_norm_odd": {"x": {"shape": [3, 5], "data": [0.1, ...]},
 *                       "out": {...}, "grad_x": {...}}, ...}
 *
 * Float values are written with 9 significant digits, enough to restore
 * every float32 exactly.
 */
#ifndef MR_FIXTURE_H
#define MR_FIXTURE_H

#include "multiround/tensor.h"

typedef struct mr_fixture mr_fixture;

/* Loads path (relative to the tests/ folder, where CTest runs). Returns NULL
 * and reports a test failure when the file is missing or malformed. */
mr_fixture *mr_fixture_load(const char *path);
void mr_fixture_free(mr_fixture *fixture);

/*
 * Creates a float tensor in ctx holding tensor `name` of case `case_name`.
 * Returns NULL and reports a test failure when either is missing.
 */
mr_tensor *mr_fixture_tensor(mr_fixture *fixture, mr_ctx *ctx,
                             const char *case_name, const char *name);

/* The same, as an int32 tensor (values must be integers). */
mr_tensor *mr_fixture_tensor_i32(mr_fixture *fixture, mr_ctx *ctx,
                                 const char *case_name, const char *name);

/* Reads a number stored directly under case_name.name ("eps": 1e-5). */
double mr_fixture_number(mr_fixture *fixture, const char *case_name,
                         const char *name, double fallback);

#endif /* MR_FIXTURE_H */
