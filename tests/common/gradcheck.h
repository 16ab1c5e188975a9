/*
 * Finite-difference gradient checks for engine operations.
 *
 * The checked function is L = sum_i out_i * r_i with r a fixed random
 * vector, so every output element contributes. Analytic gradients come
 * from mr_tensor_backward() seeded with r; numerical ones from central
 * differences (L(x + eps) - L(x - eps)) / (2 eps), with each L summed in
 * double precision from a fresh forward pass.
 */
#ifndef MR_GRADCHECK_H
#define MR_GRADCHECK_H

#include "multiround/tensor.h"

/* Builds the output from the inputs in ctx; user carries extra arguments. */
typedef mr_tensor *(*mr_gradcheck_build_fn)(mr_ctx *ctx, mr_tensor **inputs,
                                            void *user);

typedef struct mr_gradcheck_options {
    double eps;         /* step of the central difference (default 1e-3) */
    double atol, rtol;  /* pass when |a - n| <= atol + rtol * |n|
                           (defaults 1e-3 and 1e-2) */
    int max_elements;   /* elements checked per input, spread evenly
                           (default 0: all) */
} mr_gradcheck_options;

/*
 * Checks the gradient of every input that requires one (mark inputs with
 * mr_tensor_set_requires_grad). Inputs must be contiguous float tensors in
 * a context that outlives the check; their values are restored afterwards.
 * Failures are reported through the test runner with label. Returns the
 * number of mismatching elements.
 */
int mr_gradcheck(const char *label, mr_gradcheck_build_fn build,
                 mr_tensor **inputs, int n_inputs, void *user,
                 const mr_gradcheck_options *options);

#endif /* MR_GRADCHECK_H */
