/*
 * `multiround demo`: trains a small character-level GPT on a short English
 * text (data/gettysburg.txt by default) with AdamW, logs the loss and the
 * throughput, and prints a greedy sample from the trained model.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "multiround/nn.h"
#include "multiround/optim.h"
#include "multiround/rng.h"
#include "multiround/tensor.h"

#define DEMO_TEXT_NAME "gettysburg.txt"
/* Texts above this size are rejected: the demo keeps the whole text in
 * memory and is meant for a few kilobytes. */
#define DEMO_TEXT_MAX_BYTES (16L * 1024 * 1024)

/* The model and training settings of the demo. */
#define DEMO_CONTEXT 32
#define DEMO_LAYERS 2
#define DEMO_HEADS 4
#define DEMO_CHANNELS 64
#define DEMO_BATCH 16
#define DEMO_LR 1e-2f
#define DEMO_MIN_LR 1e-3f
#define DEMO_WARMUP 20
#define DEMO_WEIGHT_DECAY 0.01f
#define DEMO_PROMPT_LENGTH 10

typedef struct demo_options {
    int64_t steps;
    int64_t seed;
    int64_t sample_length;
    const char *text_path; /* NULL: look for data/gettysburg.txt */
} demo_options;

static void print_help(void) {
    printf("usage: multiround demo [OPTIONS]\n\n"
           "Trains a %d-layer character-level GPT (%d heads, %d channels, context %d,\n"
           "batch %d, AdamW with lr %g and cosine decay) on a short English text, logs\n"
           "step, loss and tokens/s, and prints a greedy sample of the trained model.\n"
           "Each run of whitespace in the text counts as one space.\n\n"
           "options:\n"
           "  --steps N     training steps (default: 300)\n"
           "  --seed S      seed of the weights and the batch order (default: 1)\n"
           "  --sample N    characters to generate after training (default: 200)\n"
           "  --text PATH   text file to train on (default: data/%s, looked up in\n"
           "                the current folder, beside the executable's folder, then\n"
           "                in the installed share/multiround/)\n",
           DEMO_LAYERS, DEMO_HEADS, DEMO_CHANNELS, DEMO_CONTEXT, DEMO_BATCH, (double)DEMO_LR,
           DEMO_TEXT_NAME);
    cli_print_shared_options(stdout, 16);
}

/* Parses the demo's options; returns -1 to continue, otherwise the exit
 * code (0 after --help, 2 on a usage error). */
static int parse_options(int argc, char **argv, demo_options *options) {
    *options = (demo_options){.steps = 300, .seed = 1, .sample_length = 200};
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help();
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }

        bool ok;
        if (strcmp(option, "--steps") == 0) {
            ok = cli_parse_int64(option, value, 1, 1000000000, &options->steps);
        } else if (strcmp(option, "--seed") == 0) {
            ok = cli_parse_int64(option, value, 0, INT64_MAX, &options->seed);
        } else if (strcmp(option, "--sample") == 0) {
            ok = cli_parse_int64(option, value, 0, 100000, &options->sample_length);
        } else if (strcmp(option, "--text") == 0) {
            ok = value != NULL;
            if (!ok) {
                cli_error("--text needs a file path");
            }
            options->text_path = value;
        } else {
            cli_error("unknown option '%s' for demo; run 'multiround demo --help'", option);
            return 2;
        }
        if (!ok) {
            return 2;
        }
        i++;
    }
    return -1;
}

/* Reads the whole file at path into a NUL-terminated buffer. Returns NULL
 * and prints the reason on failure. */
static char *read_text(const char *path, long *length) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        cli_error("cannot open the text file %s", path);
        return NULL;
    }
    struct stat info;
    if (fstat(fileno(file), &info) != 0 || info.st_size > DEMO_TEXT_MAX_BYTES) {
        cli_error("%s is larger than the demo's limit of %ld bytes", path,
                  DEMO_TEXT_MAX_BYTES);
        fclose(file);
        return NULL;
    }
    char *text = malloc((size_t)info.st_size + 1);
    size_t got = text != NULL ? fread(text, 1, (size_t)info.st_size, file) : 0;
    fclose(file);
    if (text == NULL || got != (size_t)info.st_size) {
        cli_error("failed to read %s", path);
        free(text);
        return NULL;
    }
    text[got] = '\0';
    *length = (long)got;
    return text;
}

/*
 * Replaces each run of whitespace (spaces, line breaks, tabs) with one
 * space, in place, and returns the new length. Without this, greedy
 * sampling that reaches a paragraph break tends to repeat line breaks.
 */
static long collapse_whitespace(char *text, long length) {
    long out = 0;
    for (long i = 0; i < length; i++) {
        bool space = isspace((unsigned char)text[i]) != 0;
        if (space && out > 0 && text[out - 1] == ' ') {
            continue;
        }
        text[out++] = space ? ' ' : text[i];
    }
    text[out] = '\0';
    return out;
}

/* Finds data/gettysburg.txt in the current folder, in the parent of the
 * executable's folder (the source tree when run from a build folder), or
 * in PREFIX/share/multiround/ beside an installed executable. */
static bool find_default_text(char *path, size_t size) {
    snprintf(path, size, "data/%s", DEMO_TEXT_NAME);
    if (access(path, R_OK) == 0) {
        return true;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return false;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    snprintf(path, size, "%s/../data/%s", exe, DEMO_TEXT_NAME);
    if (access(path, R_OK) == 0) {
        return true;
    }
    snprintf(path, size, "%s/../share/multiround/%s", exe, DEMO_TEXT_NAME);
    return access(path, R_OK) == 0;
}

/* The character vocabulary: the distinct bytes of the text in byte order. */
typedef struct vocabulary {
    int size;
    unsigned char chars[256];
    int32_t ids[256]; /* byte -> id, -1 for bytes absent from the text */
} vocabulary;

static void build_vocabulary(const char *text, long length, vocabulary *vocab) {
    bool present[256] = {false};
    for (long i = 0; i < length; i++) {
        present[(unsigned char)text[i]] = true;
    }
    vocab->size = 0;
    for (int byte = 0; byte < 256; byte++) {
        vocab->ids[byte] = present[byte] ? vocab->size : -1;
        if (present[byte]) {
            vocab->chars[vocab->size++] = (unsigned char)byte;
        }
    }
}

/* Fills tokens and targets [B, T] with random windows of the encoded text;
 * targets are the tokens shifted by one. */
static void sample_batch(const int32_t *encoded, long length, mr_rng *rng, int32_t *tokens,
                         int32_t *targets) {
    for (int b = 0; b < DEMO_BATCH; b++) {
        long start = (long)mr_rng_below(rng, (uint64_t)(length - DEMO_CONTEXT));
        memcpy(tokens + b * DEMO_CONTEXT, encoded + start, DEMO_CONTEXT * sizeof(int32_t));
        memcpy(targets + b * DEMO_CONTEXT, encoded + start + 1,
               DEMO_CONTEXT * sizeof(int32_t));
    }
}

/* Adds the model's views to opt: decay for matrices, none for the rest. */
static bool add_param_groups(mr_optim *opt, mr_gpt *gpt, mr_error *err) {
    mr_tensor **views;
    int count;
    mr_gpt_params(gpt, &views, &count);
    mr_tensor **group = malloc((size_t)count * sizeof *group);
    if (group == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "demo: no memory for the parameter groups");
        return false;
    }
    int n = mr_gpt_params_by_decay(gpt, true, group);
    bool ok = mr_optim_add_group(opt, group, n, DEMO_WEIGHT_DECAY, 1.0f, err) == MR_OK;
    n = mr_gpt_params_by_decay(gpt, false, group);
    ok = ok && mr_optim_add_group(opt, group, n, 0.0f, 1.0f, err) == MR_OK;
    free(group);
    return ok;
}

/* Runs the training loop and prints the sample; returns the exit code. */
static int train_and_sample(const demo_options *options, const char *text, long length) {
    vocabulary vocab;
    build_vocabulary(text, length, &vocab);
    int32_t *encoded = malloc((size_t)length * sizeof *encoded);
    int32_t *tokens = malloc(DEMO_BATCH * DEMO_CONTEXT * sizeof *tokens);
    int32_t *targets = malloc(DEMO_BATCH * DEMO_CONTEXT * sizeof *targets);
    int32_t *sample = malloc((size_t)(DEMO_PROMPT_LENGTH + options->sample_length) *
                             sizeof *sample);
    mr_gpt_config config = {.vocab_size = vocab.size, .context = DEMO_CONTEXT,
                            .layers = DEMO_LAYERS, .heads = DEMO_HEADS,
                            .channels = DEMO_CHANNELS, .dropout = 0.0f};
    mr_error err = {0};
    mr_gpt *gpt = mr_gpt_create(&config, (uint64_t)options->seed, &err);
    mr_optim_config optim_config = mr_optim_config_default(MR_OPTIM_ADAMW);
    mr_optim *opt = gpt != NULL ? mr_optim_create(&optim_config, &err) : NULL;
    mr_ctx *ctx = mr_ctx_create(0);
    int code = 1;
    if (encoded == NULL || tokens == NULL || targets == NULL || sample == NULL || ctx == NULL) {
        cli_error("out of memory while setting up the demo");
        goto done;
    }
    if (opt == NULL || !add_param_groups(opt, gpt, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    for (long i = 0; i < length; i++) {
        encoded[i] = vocab.ids[(unsigned char)text[i]];
    }
    printf("demo: %ld characters, vocabulary %d, model of %lld parameters, %d threads\n",
           length, vocab.size, (long long)mr_gpt_param_count(gpt), mr_threads_get());

    /* Training: one random batch per step, cosine learning rate. */
    mr_lr_schedule schedule = {.base_lr = DEMO_LR, .min_lr = DEMO_MIN_LR,
                               .warmup_steps = DEMO_WARMUP, .total_steps = options->steps,
                               .decay = MR_LR_COSINE};
    if (schedule.warmup_steps > options->steps) {
        schedule.warmup_steps = options->steps;
    }
    mr_rng batch_rng;
    mr_rng_init(&batch_rng, (uint64_t)options->seed ^ 0x5eedba7c4ull);
    int64_t shape[2] = {DEMO_BATCH, DEMO_CONTEXT};
    cli_progress progress;
    cli_progress_init(&progress, options->steps, stdout);
    float first_loss = 0.0f, loss_value = 0.0f;
    double start = cli_seconds();
    for (int64_t step = 0; step < options->steps; step++) {
        sample_batch(encoded, length, &batch_rng, tokens, targets);
        mr_ctx_reset(ctx);
        mr_tensor *loss = mr_gpt_forward(gpt, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens),
                                         mr_tensor_from_i32(ctx, 2, shape, targets));
        if (mr_tensor_backward(ctx, loss, NULL) != MR_OK) {
            cli_error("training step %lld failed: %s", (long long)step + 1,
                      mr_ctx_error_message(ctx));
            goto done;
        }
        mr_optim_clip_grad_norm(opt, 1.0f);
        if (mr_optim_step(opt, mr_lr_at(&schedule, step), &err) != MR_OK) {
            cli_error("optimizer step %lld failed: %s", (long long)step + 1, err.message);
            goto done;
        }
        mr_optim_zero_grad(opt);

        loss_value = loss->data[0];
        if (step == 0) {
            first_loss = loss_value;
        }
        double elapsed = cli_seconds() - start;
        char detail[128];
        snprintf(detail, sizeof detail, "loss %.4f  %.0f tokens/s", (double)loss_value,
                 (double)(step + 1) * DEMO_BATCH * DEMO_CONTEXT / (elapsed > 0 ? elapsed : 1e-9));
        cli_progress_update(&progress, stdout, step + 1, detail);
    }
    printf("demo: loss fell from %.4f to %.4f in %lld steps (%.1f s)\n", (double)first_loss,
           (double)loss_value, (long long)options->steps, cli_seconds() - start);

    /* Greedy continuation of the text's first characters. */
    int prompt = length < DEMO_PROMPT_LENGTH ? (int)length : DEMO_PROMPT_LENGTH;
    memcpy(sample, encoded, (size_t)prompt * sizeof *sample);
    if (mr_gpt_generate_greedy(gpt, ctx, sample, prompt, (int)options->sample_length, &err) !=
        MR_OK) {
        cli_error("sampling failed: %s", err.message);
        goto done;
    }
    printf("demo: greedy sample:\n");
    for (int64_t i = 0; i < prompt + options->sample_length; i++) {
        putchar(vocab.chars[sample[i]]);
    }
    putchar('\n');
    code = 0;

done:
    mr_ctx_free(ctx);
    mr_optim_free(opt);
    mr_gpt_free(gpt);
    free(sample);
    free(targets);
    free(tokens);
    free(encoded);
    return code;
}

int cli_demo(int argc, char **argv) {
    demo_options options;
    int code = parse_options(argc, argv, &options);
    if (code >= 0) {
        return code;
    }

    char default_path[PATH_MAX + 64];
    const char *path = options.text_path;
    if (path == NULL) {
        if (!find_default_text(default_path, sizeof default_path)) {
            cli_error("cannot find data/%s in the current folder or beside the executable; "
                      "pass --text PATH",
                      DEMO_TEXT_NAME);
            return 1;
        }
        path = default_path;
    }
    long length = 0;
    char *text = read_text(path, &length);
    if (text == NULL) {
        return 1;
    }
    length = collapse_whitespace(text, length);
    if (length < DEMO_CONTEXT + 2) {
        cli_error("%s has %ld bytes after collapsing whitespace; the demo needs at least %d",
                  path, length, DEMO_CONTEXT + 2);
        free(text);
        return 1;
    }
    code = train_and_sample(&options, text, length);
    free(text);
    return code;
}
