/*
 * Prompt processing, greedy generation and training speed of a randomly
 * initialised Llama model of realistic shape, with split-half rotary
 * positions as Hugging Face stores them. The weights come from
 * mr_llama_init() with seed 42; for inference they are then converted to
 * --type. Shapes (--preset):
 *
 *   58m   C 512, 8 layers, 8 heads of 64, SwiGLU 1408, V 32000, untied
 *   34m   C 512, 8 layers, 8 heads of 64, SwiGLU 1408, V 8192, untied
 *         (the training preset: a smaller vocabulary keeps the logits of
 *         a batch small)
 *   135m  C 576, 30 layers, 9 heads of 64 with 3 KV heads, SwiGLU 1536,
 *         V 49152, tied (the shape of SmolLM2-135M)
 *   500m  C 1024, 24 layers, 16 heads of 64, SwiGLU 4096, V 32000, untied
 *         (about 470M parameters, near Qwen2.5-0.5B's size with a
 *         smaller vocabulary)
 *
 *     bench_lm [--preset NAME] [--type f32|f16|bf16|q8_0|q4_0] [--threads N]
 *              [--prompt N] [--gen N] [--repeats N] [--bandwidth GB/s]
 *              [--save-hf DIR]
 *     bench_lm --train [--preset NAME] [--threads N] [--batch B]
 *              [--length T] [--steps N]
 *
 * Inference: each repeat evaluates a prompt of --prompt token ids in one
 * batch, then generates --gen tokens greedily, one mr_llama_eval() call
 * per token, with a fresh KV cache. Prints one line per repeat and a
 * summary line
 *
 *     engine type T threads N prompt_tok_s X gen_tok_s Y ids I1,I2,...
 *         weight_mb_per_token W decode_gb_s G roofline F
 *
 * (one line) with the medians over repeats and the first 16 generated
 * ids. W is the weight bytes that one decode step reads (every matrix
 * once, one row of the token embedding), G = W x Y, and F = G divided by
 * --bandwidth (the read bandwidth that bench_bandwidth measures, 10^9
 * bytes per second); F is printed as - without --bandwidth.
 *
 * Training: each step computes mr_llama_loss() on a [B, T] batch,
 * backpropagates, and takes an AdamW step (lr 1e-4, PyTorch's defaults
 * otherwise) over all parameters. One untimed step comes first. Prints
 *
 *     engine train threads N tok_s X first_loss L cpu_ms_min C cpu_ms_median M
 *
 * where X is B x T x steps over the wall time of the timed steps and L is
 * the loss of the first step. C and M are the least and the median
 * process CPU time of one timed step in milliseconds. On a loaded machine
 * they move less than the wall time, because time spent waiting for a
 * core does not count. bench/lm/torch_lm.py --train runs the same
 * step in PyTorch and prints the same fields.
 *
 * --save-hf writes the F32 weights of the preset as a Hugging Face folder
 * for bench/lm/torch_lm.py and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/llama.h"
#include "multiround/optim.h"
#include "multiround/params.h"
#include "multiround/tensor.h"

#define MAX_REPEATS 16

typedef struct preset {
    const char *name;
    mr_llama_config config;
} preset;

static const preset presets[] = {
    {"58m", {.vocab_size = 32000, .dim = 512, .layers = 8, .heads = 8, .kv_heads = 8,
             .head_dim = 64, .ffn_dim = 1408, .context_length = 1024, .rope_base = 10000.0f,
             .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-5f}},
    {"34m", {.vocab_size = 8192, .dim = 512, .layers = 8, .heads = 8, .kv_heads = 8,
             .head_dim = 64, .ffn_dim = 1408, .context_length = 1024, .rope_base = 10000.0f,
             .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-5f}},
    {"135m", {.vocab_size = 49152, .dim = 576, .layers = 30, .heads = 9, .kv_heads = 3,
              .head_dim = 64, .ffn_dim = 1536, .context_length = 2048, .rope_base = 10000.0f,
              .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-5f, .tied_output = true}},
    {"500m", {.vocab_size = 32000, .dim = 1024, .layers = 24, .heads = 16, .kv_heads = 16,
              .head_dim = 64, .ffn_dim = 4096, .context_length = 2048, .rope_base = 10000.0f,
              .rope_layout = MR_ROPE_HALVES, .rms_eps = 1e-6f}},
};

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* CPU time of the whole process (every thread) in seconds. */
static double cpu_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
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

/* Fills ids with the fixed pseudo-random ids that torch_lm.py recomputes:
 * id i is (i * 7919 + 13) mod vocab. */
static void make_ids(int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % vocab);
    }
}

/* Returns the bytes of weights that one single-token decode step reads:
 * every matrix in full, except that the token embedding contributes one
 * row unless the output layer reuses it (tied output). 1-D weights are
 * read in full. */
static double weight_bytes_per_token(const mr_llama *model) {
    const mr_llama_config *c = mr_llama_get_config(model);
    double total = 0.0;
    for (int i = 0; i < mr_llama_weight_count(model); i++) {
        const mr_llama_weight *w = mr_llama_weight_at(model, i);
        double row = (double)mr_qtype_row_bytes(w->type, w->ne[0]);
        bool embedding = strcmp(w->name, "token_embd.weight") == 0;
        total += embedding && !c->tied_output ? row : row * (double)w->ne[1];
    }
    return total;
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
    make_ids(prompt, prompt_len, c->vocab_size);

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

/* Runs the inference benchmark on model and prints its lines. */
static int run_inference(mr_llama *model, const char *type_name, int threads, int prompt_len,
                         int gen_len, int repeats, double bandwidth_gb_s) {
    double prompt_rates[MAX_REPEATS], gen_rates[MAX_REPEATS];
    int32_t *generated = malloc((size_t)gen_len * sizeof *generated);
    if (generated == NULL) {
        fprintf(stderr, "bench_lm: out of memory\n");
        return 1;
    }
    for (int r = 0; r < repeats; r++) {
        if (!run_once(model, prompt_len, gen_len, &prompt_rates[r], &gen_rates[r], generated)) {
            free(generated);
            return 1;
        }
        printf("repeat %d: prompt %.1f tokens/s, generation %.1f tokens/s\n", r,
               prompt_rates[r], gen_rates[r]);
    }

    double gen_tok_s = median(gen_rates, repeats);
    double weight_bytes = weight_bytes_per_token(model);
    double decode_gb_s = weight_bytes * gen_tok_s / 1e9;
    printf("engine type %s threads %d prompt_tok_s %.1f gen_tok_s %.1f ids ", type_name,
           threads, median(prompt_rates, repeats), gen_tok_s);
    for (int i = 0; i < gen_len && i < 16; i++) {
        printf(i == 0 ? "%d" : ",%d", generated[i]);
    }
    printf(" weight_mb_per_token %.1f decode_gb_s %.2f roofline ", weight_bytes / 1e6,
           decode_gb_s);
    if (bandwidth_gb_s > 0.0) {
        printf("%.2f\n", decode_gb_s / bandwidth_gb_s);
    } else {
        printf("-\n");
    }
    free(generated);
    return 0;
}

/* Runs steps + 1 training steps (the first untimed) on a [batch, length]
 * batch of fixed ids and prints the summary line. */
static int run_training(mr_llama *model, int threads, int batch, int length, int steps) {
    const mr_llama_config *c = mr_llama_get_config(model);
    mr_error err = {0};
    mr_optim_config oc = mr_optim_config_default(MR_OPTIM_ADAMW);
    mr_optim *opt = mr_optim_create(&oc, &err);
    mr_tensor *flat = mr_paramset_flat(mr_llama_params(model));
    if (opt == NULL || mr_optim_add_group(opt, &flat, 1, MR_OPTIM_DEFAULT_DECAY, 1.0f, &err) !=
                           MR_OK) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
        mr_optim_free(opt);
        return 1;
    }

    /* Tokens are ids 0 .. B*T-1 of the fixed sequence, row by row, and the
     * targets are the same sequence shifted left by one. */
    int64_t count = (int64_t)batch * length;
    int32_t *sequence = malloc((size_t)(count + 1) * sizeof *sequence);
    double *step_cpu = malloc((size_t)steps * sizeof *step_cpu);
    mr_ctx *ctx = mr_ctx_create(0);
    if (sequence == NULL || step_cpu == NULL || ctx == NULL) {
        fprintf(stderr, "bench_lm: out of memory\n");
        free(sequence);
        free(step_cpu);
        mr_ctx_free(ctx);
        mr_optim_free(opt);
        return 1;
    }
    make_ids(sequence, (int)count + 1, c->vocab_size);
    int64_t shape[2] = {batch, length};

    float first_loss = 0.0f;
    double start = 0.0;
    int status = 0;
    for (int step = 0; step <= steps; step++) {
        if (step == 1) {
            start = seconds();
        }
        double step_start = cpu_seconds();
        mr_ctx_reset(ctx);
        mr_tensor *tokens = mr_tensor_from_i32(ctx, 2, shape, sequence);
        mr_tensor *targets = mr_tensor_from_i32(ctx, 2, shape, sequence + 1);
        mr_tensor *loss = mr_llama_loss(model, ctx, tokens, targets, NULL);
        if (loss == NULL || mr_tensor_backward(ctx, loss, NULL) != MR_OK) {
            fprintf(stderr, "bench_lm: training step %d: %s\n", step, mr_ctx_error_message(ctx));
            status = 1;
            break;
        }
        if (step == 0) {
            first_loss = mr_tensor_get(loss, 0);
        }
        if (mr_optim_step(opt, 1e-4f, &err) != MR_OK) {
            fprintf(stderr, "bench_lm: training step %d: %s\n", step, err.message);
            status = 1;
            break;
        }
        mr_optim_zero_grad(opt);
        if (step > 0) {
            step_cpu[step - 1] = cpu_seconds() - step_start;
        }
    }
    double elapsed = seconds() - start;

    if (status == 0) {
        printf("engine train threads %d tok_s %.1f first_loss %.6f", threads,
               (double)count * steps / elapsed, (double)first_loss);
        double cpu_median = median(step_cpu, steps); /* sorts step_cpu */
        printf(" cpu_ms_min %.1f cpu_ms_median %.1f\n", 1e3 * step_cpu[0], 1e3 * cpu_median);
    }
    mr_ctx_free(ctx);
    free(step_cpu);
    free(sequence);
    mr_optim_free(opt);
    return status;
}

static void print_usage(void) {
    fprintf(stderr,
            "usage: bench_lm [--preset 58m|34m|135m|500m] [--type f32|f16|bf16|q8_0|q4_0]\n"
            "                [--threads N] [--prompt N] [--gen N] [--repeats 1..%d]\n"
            "                [--bandwidth GB/s] [--save-hf DIR]\n"
            "       bench_lm --train [--preset NAME] [--threads N] [--batch B] [--length T]\n"
            "                [--steps N]\n",
            MAX_REPEATS);
}

int main(int argc, char **argv) {
    const char *type_name = "f32";
    const char *preset_name = "58m";
    const char *save_dir = NULL;
    bool train = false;
    int threads = 1, prompt_len = 128, gen_len = 64, repeats = 3;
    int batch = 4, length = 64, steps = 3;
    double bandwidth_gb_s = 0.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--train") == 0) {
            train = true;
            continue;
        }
        if (i + 1 == argc) {
            print_usage();
            return 2;
        }
        const char *value = argv[++i];
        if (strcmp(argv[i - 1], "--type") == 0) {
            type_name = value;
        } else if (strcmp(argv[i - 1], "--preset") == 0) {
            preset_name = value;
        } else if (strcmp(argv[i - 1], "--threads") == 0) {
            threads = atoi(value);
        } else if (strcmp(argv[i - 1], "--prompt") == 0) {
            prompt_len = atoi(value);
        } else if (strcmp(argv[i - 1], "--gen") == 0) {
            gen_len = atoi(value);
        } else if (strcmp(argv[i - 1], "--repeats") == 0) {
            repeats = atoi(value);
        } else if (strcmp(argv[i - 1], "--bandwidth") == 0) {
            bandwidth_gb_s = atof(value);
        } else if (strcmp(argv[i - 1], "--batch") == 0) {
            batch = atoi(value);
        } else if (strcmp(argv[i - 1], "--length") == 0) {
            length = atoi(value);
        } else if (strcmp(argv[i - 1], "--steps") == 0) {
            steps = atoi(value);
        } else if (strcmp(argv[i - 1], "--save-hf") == 0) {
            save_dir = value;
        } else {
            fprintf(stderr, "bench_lm: unknown option %s\n", argv[i - 1]);
            print_usage();
            return 2;
        }
    }

    const preset *chosen = NULL;
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
        if (strcmp(presets[p].name, preset_name) == 0) {
            chosen = &presets[p];
        }
    }
    mr_qtype type;
    if (chosen == NULL || !mr_qtype_parse(type_name, &type) || prompt_len < 1 || gen_len < 1 ||
        repeats < 1 || repeats > MAX_REPEATS || bandwidth_gb_s < 0.0 || batch < 1 ||
        length < 2 || length > chosen->config.context_length || steps < 1) {
        print_usage();
        return 2;
    }
    mr_threads_set(threads);

    mr_error err = {0};
    mr_llama *model = mr_llama_init(&chosen->config, 42, &err);
    if (model == NULL) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
        return 1;
    }
    int status = 0;
    if (save_dir != NULL) {
        if (mr_llama_save_hf(model, save_dir, MR_QTYPE_F32, NULL, NULL, &err) != MR_OK) {
            fprintf(stderr, "bench_lm: %s\n", err.message);
            status = 1;
        }
    } else if (train) {
        status = run_training(model, threads, batch, length, steps);
    } else if (mr_llama_quantize(model, type, &err) != MR_OK) {
        fprintf(stderr, "bench_lm: %s\n", err.message);
        status = 1;
    } else {
        status = run_inference(model, type_name, threads, prompt_len, gen_len, repeats,
                               bandwidth_gb_s);
    }
    mr_llama_free(model);
    return status;
}
