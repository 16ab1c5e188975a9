/*
 * One full training step of the small GPT: forward, backward and an AdamW
 * update, timed over --steps steps after --warmup untimed ones. The model
 * has 2 layers, 4 heads, C = 128, V = 4608 and context 50, about 0.99M
 * parameters; the batch is 64 sequences of 50 tokens. bench/torch_train_step.py
 * measures the same model and step in PyTorch.
 *
 *     bench_train_step [--threads N] [--steps N] [--warmup N]
 *
 * Prints one summary line: "engine ms_per_step X tokens_per_s Y".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/nn.h"
#include "multiround/optim.h"
#include "multiround/rng.h"

#define BENCH_BATCH 64
#define BENCH_LENGTH 50

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Runs one training step; returns false (message printed) on failure. */
static bool train_step(mr_gpt *gpt, mr_optim *opt, mr_ctx *ctx, const int32_t *tokens,
                       const int32_t *targets) {
    mr_error err = {0};
    int64_t shape[2] = {BENCH_BATCH, BENCH_LENGTH};
    mr_ctx_reset(ctx);
    mr_tensor *loss = mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                     mr_tensor_from_i32(ctx, 2, shape, targets));
    if (mr_tensor_backward(ctx, loss, NULL) != MR_OK) {
        fprintf(stderr, "bench_train_step: %s\n", mr_ctx_error_message(ctx));
        return false;
    }
    if (mr_optim_step(opt, 1e-3f, &err) != MR_OK) {
        fprintf(stderr, "bench_train_step: %s\n", err.message);
        return false;
    }
    mr_optim_zero_grad(opt);
    return true;
}

int main(int argc, char **argv) {
    int threads = 0, steps = 20, warmup = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--steps") == 0) {
            steps = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            warmup = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: bench_train_step [--threads N] [--steps N] [--warmup N]\n");
            return 2;
        }
    }
    if (steps < 1) {
        steps = 1;
    }
    mr_threads_set(threads);

    /* The model, with one AdamW group as torch_train_step.py uses. */
    mr_gpt_config config = {.vocab_size = 4608, .context = BENCH_LENGTH, .layers = 2,
                            .heads = 4, .channels = 128, .dropout = 0.0f};
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, 1, &err);
    mr_optim_config optim_config = mr_optim_config_default(MR_OPTIM_ADAMW);
    mr_optim *opt = gpt != NULL ? mr_optim_create(&optim_config, &err) : NULL;
    mr_tensor **views;
    int count;
    if (opt == NULL) {
        fprintf(stderr, "bench_train_step: %s\n", err.message);
        return 1;
    }
    mr_gpt_params(gpt, &views, &count);
    if (mr_optim_add_group(opt, views, count, 0.01f, 1.0f, &err) != MR_OK) {
        fprintf(stderr, "bench_train_step: %s\n", err.message);
        return 1;
    }

    /* A fixed random batch. */
    static int32_t tokens[BENCH_BATCH * BENCH_LENGTH], targets[BENCH_BATCH * BENCH_LENGTH];
    mr_rng rng;
    mr_rng_init(&rng, 2);
    for (int i = 0; i < BENCH_BATCH * BENCH_LENGTH; i++) {
        tokens[i] = (int32_t)mr_rng_below(&rng, (uint64_t)config.vocab_size);
        targets[i] = (int32_t)mr_rng_below(&rng, (uint64_t)config.vocab_size);
    }

    mr_ctx *ctx = mr_ctx_create(0);
    for (int i = 0; i < warmup; i++) {
        if (!train_step(gpt, opt, ctx, tokens, targets)) {
            return 1;
        }
    }
    double start = seconds();
    for (int i = 0; i < steps; i++) {
        if (!train_step(gpt, opt, ctx, tokens, targets)) {
            return 1;
        }
    }
    double per_step = (seconds() - start) / steps;

    printf("bench_train_step: %lld parameters, batch %d x %d, %d threads, BLAS %s, "
           "%d steps after %d warm-up\n",
           (long long)mr_gpt_param_count(gpt), BENCH_BATCH, BENCH_LENGTH, mr_threads_get(),
           mr_blas_name(), steps, warmup);
    printf("engine ms_per_step %.2f tokens_per_s %.0f\n", per_step * 1e3,
           BENCH_BATCH * BENCH_LENGTH / per_step);
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
    return 0;
}
