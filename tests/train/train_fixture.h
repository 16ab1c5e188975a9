/*
 * Helpers for the trainer tests: the tiny models and batches of
 * tests/fixtures/trainers.json (written by torch_trainers.py), and a
 * trainer struct around them for the per-kind loss functions.
 */
#ifndef MR_TEST_TRAIN_FIXTURE_H
#define MR_TEST_TRAIN_FIXTURE_H

#include <string.h>

#include "fixture.h"
#include "multiround/llama.h"
#include "test.h"
#include "train_internal.h"

#define TRAINERS_FIXTURE "fixtures/trainers.json"

/* Creates the model of case name with the fixture's weights; prefix
 * selects another set of weights ("ref." for the DPO reference). */
static inline mr_llama *fixture_model(mr_fixture *fixture, mr_ctx *data, const char *name,
                                      const char *prefix) {
    mr_llama_config config = {
        .vocab_size = (int)mr_fixture_number(fixture, name, "vocab_size", 0),
        .dim = (int)mr_fixture_number(fixture, name, "dim", 0),
        .layers = (int)mr_fixture_number(fixture, name, "layers", 0),
        .heads = (int)mr_fixture_number(fixture, name, "heads", 0),
        .kv_heads = (int)mr_fixture_number(fixture, name, "kv_heads", 0),
        .head_dim = (int)mr_fixture_number(fixture, name, "head_dim", 0),
        .ffn_dim = (int)mr_fixture_number(fixture, name, "ffn_dim", 0),
        .context_length = (int)mr_fixture_number(fixture, name, "context_length", 0),
        .rope_base = (float)mr_fixture_number(fixture, name, "rope_base", 0),
        .rope_layout = MR_ROPE_ADJACENT,
        .rms_eps = (float)mr_fixture_number(fixture, name, "rms_eps", 0),
    };
    mr_error err;
    mr_llama *model = mr_llama_init(&config, 1, &err);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mr_llama_init: %s", err.message);
        return NULL;
    }
    mr_paramset *ps = mr_llama_params(model);
    for (int i = 0; i < mr_paramset_count(ps); i++) {
        mr_tensor *param = mr_paramset_get(ps, i);
        char key[96];
        snprintf(key, sizeof key, "%s%s", prefix, param->name);
        mr_tensor *values = mr_fixture_tensor(fixture, data, name, key);
        if (values != NULL) {
            memcpy(param->data, values->data, (size_t)mr_tensor_numel(param) * sizeof(float));
        }
    }
    return model;
}

/* Fills b from the fixture's tokens (and targets, last and labels where
 * the case has them) for `examples` examples. */
static inline void fixture_batch(mr_fixture *fixture, mr_ctx *data, const char *name,
                                 int examples, train_batch *b) {
    memset(b, 0, sizeof *b);
    b->tokens = mr_fixture_tensor_i32(fixture, data, name, "tokens");
    if (b->tokens == NULL) {
        return;
    }
    b->rows = (int)b->tokens->shape[0];
    b->length = (int)b->tokens->shape[1];
    b->examples = examples;
    b->seqs_per_example = b->rows / examples;
    if (strcmp(name, "sft") == 0 || strcmp(name, "dpo") == 0) {
        b->targets = mr_fixture_tensor_i32(fixture, data, name, "targets");
    } else {
        b->last = mr_fixture_tensor_i32(fixture, data, name, "last");
    }
    if (strcmp(name, "classify") == 0) {
        b->labels = mr_fixture_tensor_i32(fixture, data, name, "labels");
    }
}

/* Checks the gradient of every "grad.<name>" the caller lists against
 * the parameter found in ps. */
static inline void check_fixture_grads(mr_fixture *fixture, mr_ctx *data, const char *name,
                                       mr_paramset *ps, const char *const *weights, int n,
                                       double atol, double rtol) {
    for (int i = 0; i < n; i++) {
        char key[96];
        snprintf(key, sizeof key, "grad.%s", weights[i]);
        mr_tensor *expected = mr_fixture_tensor(fixture, data, name, key);
        mr_tensor *param = mr_paramset_find(ps, weights[i]);
        CHECK(param != NULL && param->grad != NULL && expected != NULL);
        if (param != NULL && param->grad != NULL && expected != NULL) {
            int bad = mr_test_compare(__FILE__, __LINE__, key, param->grad, expected->data,
                                      mr_tensor_numel(param), atol, rtol);
            CHECK_INT_EQ(bad, 0);
        }
    }
}

#endif /* MR_TEST_TRAIN_FIXTURE_H */
