/*
 * Prompt processing and greedy generation speed of a randomly initialised
 * Llama model of realistic shape: C 512, 8 layers, 8 heads of 64, SwiGLU
 * width 1408, V 32000 (about 58M parameters), with split-half rotary
 * positions as Hugging Face stores them. The weights come from
 * mr_llama_init() with a fixed seed and are then converted to --type.
 *
 *     bench_lm [--type f32|f16|q8_0|q4_0] [--threads N] [--prompt N]
 *              [--gen N] [--repeats N] [--save-hf DIR]
 *
 * Each repeat evaluates a prompt of --prompt token ids in one batch, then
 * generates --gen tokens greedily, one mr_llama_eval() call per token,
 * with a fresh KV cache. Prints one line per repeat and a summary line
 *
 *     engine type T threads N prompt_tok_s X gen_tok_s Y ids I1,I2,...
 *
 * with the medians over repeats and the first 16 generated ids. --save-hf
 * writes the F32 weights as a Hugging Face folder for bench/lm/torch_lm.py
 * and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/llama.h"

#define MAX_REPEATS 16

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* Returns the index of the largest of n logits (the first on ties). */
static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

/* The prompt: fixed pseudo-random ids that torch_lm.py recomputes. */
static void make_prompt(int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % vocab);
    }
}

/* Runs one repeat; stores tokens/s of both phases and the generated ids. */
static bool run_once(const mr_llama *model, int prompt_len, int gen_len, double *prompt_tok_s,
                     double *gen_tok_s, int32_t *generated) {
    const mr_llama_config *c = mr_llama_get_config(model);
    mr_error err = {0};
    mr_llama_cache *cache = mr_llama_cache_create(model, prompt_len + gen_len, &err);
    int32_t *prompt = malloc((size_t)prompt_len * sizeof *prompt);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (cache == NULL || prompt == NULL || logits == NULL) {
        fprintf(stderr, "bench_lm: %s\n", cache == NULL ? err.message : "out of memory");
        mr_llama_cache_free(cache);
        free(prompt);
        free(logits);
        return false;
    }
    make_prompt(prompt, prompt_len, c->vocab_size);

    double start = seconds();
    mr_status status = mr_llama_eval(model, cache, prompt, prompt_len, 0, logits,
                                     MR_LLAMA_LOGITS_LAST, &err);
    double middle = seconds();
    int32_t next = argmax(logits, c->vocab_size);
    for (int i = 0; status == MR_OK && i < gen_len; i++) {
        generated[i] = next;
        status = mr_llama_eval(model, cache, &next, 1, prompt_len + i, logits,
                               MR_LLAMA_LOGITS_LAST, &err);
        next = argmax(logits, c->vocab_size);
    }
    double end = seconds();

    if (status != MR_OK) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
    }
    *prompt_tok_s = prompt_len / (middle - start);
    *gen_tok_s = gen_len / (end - middle);
    mr_llama_cache_free(cache);
    free(prompt);
    free(logits);
    return status == MR_OK;
}

int main(int argc, char **argv) {
    const char *type_name = "f32";
    const char *save_dir = NULL;
    int threads = 1, prompt_len = 128, gen_len = 64, repeats = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--type") == 0) {
            type_name = argv[i + 1];
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--prompt") == 0) {
            prompt_len = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--gen") == 0) {
            gen_len = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--repeats") == 0) {
            repeats = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--save-hf") == 0) {
            save_dir = argv[i + 1];
        } else {
            fprintf(stderr, "bench_lm: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    mr_qtype type;
    if (!mr_qtype_parse(type_name, &type) || prompt_len < 1 || gen_len < 1 ||
        repeats < 1 || repeats > MAX_REPEATS) {
        fprintf(stderr, "usage: bench_lm [--type f32|f16|q8_0|q4_0] [--threads N] [--prompt N] "
                        "[--gen N] [--repeats 1..%d] [--save-hf DIR]\n",
                MAX_REPEATS);
        return 2;
    }
    mr_threads_set(threads);

    mr_llama_config config = {.vocab_size = 32000, .dim = 512, .layers = 8, .heads = 8,
                              .kv_heads = 8, .head_dim = 64, .ffn_dim = 1408,
                              .context_length = 1024, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-5f};
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 42, &err);
    if (model == NULL) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
        return 1;
    }
    if (save_dir != NULL) {
        mr_status status = mr_llama_save_hf(model, save_dir, MR_QTYPE_F32, NULL, NULL, &err);
        if (status != MR_OK) {
            fprintf(stderr, "bench_lm: %s\n", err.message);
        }
        mr_llama_free(model);
        return status == MR_OK ? 0 : 1;
    }
    if (mr_llama_quantize(model, type, &err) != MR_OK) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
        mr_llama_free(model);
        return 1;
    }

    double prompt_rates[MAX_REPEATS], gen_rates[MAX_REPEATS];
    int32_t *generated = malloc((size_t)gen_len * sizeof *generated);
    for (int r = 0; r < repeats; r++) {
        if (!run_once(model, prompt_len, gen_len, &prompt_rates[r], &gen_rates[r], generated)) {
            free(generated);
            mr_llama_free(model);
            return 1;
        }
        printf("repeat %d: prompt %.1f tokens/s, generation %.1f tokens/s\n", r,
               prompt_rates[r], gen_rates[r]);
    }
    printf("engine type %s threads %d prompt_tok_s %.1f gen_tok_s %.1f ids ", type_name,
           threads, median(prompt_rates, repeats), median(gen_rates, repeats));
    for (int i = 0; i < gen_len && i < 16; i++) {
        printf(i == 0 ? "%d" : ",%d", generated[i]);
    }
    printf("\n");
    free(generated);
    mr_llama_free(model);
    return 0;
}
