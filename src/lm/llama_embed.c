/*
 * Text embeddings from a Llama model on the inference path: pooled final
 * hidden states (the output of the last RMSNorm) without the output
 * projection.
 *
 * Several texts run in one forward pass. Their tokens are packed into one
 * matrix of rows [R, C], so each projection is one BLAS product over all
 * texts, and attention is causal within each text (a block-diagonal
 * mask). No KV cache is needed because each text runs whole.
 *
 * Everything but attention is the row kernels of llama_rows.c, which
 * mr_llama_eval() runs too. Attention runs per text as BLAS products and
 * subtracts the maximum score before exp. A text's vector depends on the
 * other texts of its pass only through the row count of the projections,
 * as far as the BLAS library blocks rows differently for different row
 * counts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/blas.h"
#include "llama_internal.h"
#include "multiround/tokenizer.h"

/* Default maximum token rows of one forward pass. */
#define EMBED_DEFAULT_BATCH_TOKENS 4096

void mr_llama_embed_options_default(mr_llama_embed_options *options) {
    memset(options, 0, sizeof *options);
    options->pooling = MR_LLAMA_POOLING_MEAN;
    options->normalize = false;
    options->max_tokens = 0;
    options->batch_tokens = EMBED_DEFAULT_BATCH_TOKENS;
}

/* Scratch of one forward pass of up to capacity rows. */
typedef struct embed_scratch {
    int64_t capacity;      /* rows */
    int64_t max_length;    /* longest text, for the attention scores */
    int32_t *tokens;       /* [rows] */
    int64_t *starts;       /* [rows] first row of the row's text */
    llama_activations act; /* [rows, ...] activations of one block */
    float *scores;         /* [max_length, max_length] attention of one head */
} embed_scratch;

/* Frees the buffers of scratch. */
static void scratch_free(embed_scratch *s) {
    free(s->tokens);
    free(s->starts);
    llama_activations_free(&s->act);
    free(s->scores);
    memset(s, 0, sizeof *s);
}

/* Allocates scratch for rows token rows and texts of up to max_length
 * tokens. Returns false when memory runs out. */
static bool scratch_alloc(embed_scratch *s, const mr_llama *model, int64_t rows,
                          int64_t max_length) {
    size_t r = (size_t)rows;
    memset(s, 0, sizeof *s);
    s->capacity = rows;
    s->max_length = max_length;

    s->tokens = malloc(r * sizeof *s->tokens);
    s->starts = malloc(r * sizeof *s->starts);
    s->scores = malloc((size_t)max_length * (size_t)max_length * sizeof(float));
    bool allocated = llama_activations_alloc(&s->act, model, rows);

    /* A text alone in a pass of one row takes the matrix path as well, so
     * that its vector does not depend on which texts share its pass. */
    s->act.single_row_matvec = false;
    if (!allocated || s->tokens == NULL || s->starts == NULL || s->scores == NULL) {
        scratch_free(s);
        return false;
    }
    return true;
}

/*
 * Causal attention of the text at rows start..start+length-1 over its own
 * rows, into s->act.att. Per head, the scores [T, T] and the weighted
 * values are two BLAS products whose sizes depend on the text alone, so
 * packing does not change them. The products also fill the masked upper
 * triangle, which the softmax then zeroes: twice the minimal work, but far
 * faster than scalar loops over heads of a few dimensions. It stays apart
 * from llama_infer.c's attention, which reads a KV cache row by row.
 */
static void attention_text(const mr_llama_config *c, embed_scratch *s, int64_t start,
                           int64_t length) {
    int64_t dim = c->head_dim;
    int64_t q_width = llama_q_width(c), kv_width = llama_kv_width(c);
    int group = c->heads / c->kv_heads;
    float scale = 1.0f / sqrtf((float)dim);
    float *scores = s->scores;

    for (int h = 0; h < c->heads; h++) {
        const float *q = s->act.q + start * q_width + (int64_t)h * dim;
        const float *keys = s->act.k + start * kv_width + (int64_t)(h / group) * dim;
        const float *values = s->act.v + start * kv_width + (int64_t)(h / group) * dim;
        float *out = s->act.att + start * q_width + (int64_t)h * dim;
        mr_sgemm(false, true, length, length, dim, scale, q, q_width, keys, kv_width, 0.0f,
                 scores, length);

        /* Softmax of each row over positions 0..r; later positions get 0. */
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < length; r++) {
            float *row = scores + r * length;
            float max = -INFINITY;
            for (int64_t j = 0; j <= r; j++) {
                max = row[j] > max ? row[j] : max;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j <= r; j++) {
                row[j] = expf(row[j] - max);
                sum += row[j];
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j <= r; j++) {
                row[j] *= inv;
            }
            for (int64_t j = r + 1; j < length; j++) {
                row[j] = 0.0f;
            }
        }

        mr_sgemm(false, false, length, dim, length, 1.0f, scores, length, values, kv_width,
                 0.0f, out, q_width);
    }
}

/* Runs attention_text() on every text of the pass. */
static void attention_rows(const mr_llama_config *c, embed_scratch *s, int64_t rows) {
    int64_t start = 0;
    while (start < rows) {
        int64_t end = start + 1;
        while (end < rows && s->starts[end] == start) {
            end++;
        }
        attention_text(c, s, start, end - start);
        start = end;
    }
}

/* Runs block layer on the packed rows in s->act.x. */
static void block_rows(const mr_llama *model, embed_scratch *s, int layer, int64_t rows) {
    llama_block_qkv(model, &s->act, layer, rows);
    attention_rows(&model->config, s, rows);
    llama_block_finish(model, &s->act, layer, rows);
}

/*
 * Pools the normalised states s->act.h of one text (rows start..start+length-1)
 * into out [C], accumulating in double, and L2-normalises it if asked.
 */
static void pool_text(const embed_scratch *s, int64_t dim, int64_t start, int64_t length,
                      const mr_llama_embed_options *options, float *out) {
    if (options->pooling == MR_LLAMA_POOLING_LAST) {
        memcpy(out, s->act.h + (start + length - 1) * dim, (size_t)dim * sizeof(float));
    } else {
        for (int64_t i = 0; i < dim; i++) {
            double sum = 0.0;
            for (int64_t r = start; r < start + length; r++) {
                sum += s->act.h[r * dim + i];
            }
            out[i] = (float)(sum / (double)length);
        }
    }

    if (options->normalize) {
        double norm = 0.0;
        for (int64_t i = 0; i < dim; i++) {
            norm += (double)out[i] * out[i];
        }
        norm = sqrt(norm);
        /* NOTE: an all-zero state stays zero rather than dividing by 0. */
        if (norm > 0.0) {
            for (int64_t i = 0; i < dim; i++) {
                out[i] = (float)(out[i] / norm);
            }
        }
    }
}

/*
 * Runs one forward pass over the texts first..first+count-1, whose tokens
 * are already packed in s->tokens with their lengths in lengths, and
 * writes their vectors to out.
 */
static void embed_pass(const mr_llama *model, embed_scratch *s, const int64_t *lengths,
                       int count, const mr_llama_embed_options *options, float *out) {
    const mr_llama_config *c = &model->config;
    int64_t rows = 0;
    for (int t = 0; t < count; t++) {
        for (int64_t j = 0; j < lengths[t]; j++) {
            s->starts[rows + j] = rows;
        }
        rows += lengths[t];
    }

    /* Embed, then run every block and the final RMSNorm. Each row's rotary
     * position counts from the start of its own text. */
    const mr_llama_weight *embedding = &model->weights[model->token_embd];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        llama_weight_row(embedding, s->tokens[r], s->act.x + r * c->dim);
        llama_rope_angles(c, r - s->starts[r], s->act.cos_sin + r * c->head_dim);
    }
    for (int layer = 0; layer < c->layers; layer++) {
        block_rows(model, s, layer, rows);
    }
    llama_rms_norm_rows(s->act.x, model->weights[model->output_norm].data, c->rms_eps, rows,
                        c->dim, s->act.h);

    int64_t start = 0;
    for (int t = 0; t < count; t++) {
        pool_text(s, c->dim, start, lengths[t], options, out + (int64_t)t * c->dim);
        start += lengths[t];
    }
}

/* Checks the options and the texts' presence; fills err when invalid. */
static mr_status check_embed_args(const mr_llama *model, const mr_tokenizer *tokenizer,
                                  const char *const *texts, int n,
                                  const mr_llama_embed_options *options, const float *out,
                                  mr_error *err) {
    if (model == NULL || tokenizer == NULL || (n > 0 && (texts == NULL || out == NULL))) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: embed needs a model, a tokenizer, texts and an output");
    }
    if (n < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: embed got a negative text count %d", n);
    }
    if (options->pooling != MR_LLAMA_POOLING_MEAN && options->pooling != MR_LLAMA_POOLING_LAST) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: unknown pooling %d",
                            (int)options->pooling);
    }
    if (options->max_tokens < 0 || options->batch_tokens < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: embed max_tokens is %d and batch_tokens %d; max_tokens "
                            "must be >= 0 (0 for the context length) and batch_tokens >= 1",
                            options->max_tokens, options->batch_tokens);
    }
    if (mr_tokenizer_n_vocab(tokenizer) > model->config.vocab_size) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: the tokenizer has %lld tokens but the model only %d; use "
                            "the tokenizer of this model",
                            (long long)mr_tokenizer_n_vocab(tokenizer), model->config.vocab_size);
    }
    for (int i = 0; i < n; i++) {
        if (texts[i] == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: embed text %d is NULL", i);
        }
    }
    return MR_OK;
}

/*
 * Encodes text into tokens [0, max_tokens), allocating *tokens, and
 * stores the kept count in *length.
 */
static mr_status encode_text(const mr_tokenizer *tokenizer, const char *text, int index,
                             int max_tokens, int32_t **tokens, int64_t *length, mr_error *err) {
    *tokens = NULL;
    *length = 0;
    bool add_bos = mr_tokenizer_add_bos_default(tokenizer);
    int64_t needed = 0;
    mr_error probe;
    mr_status probed = mr_tokenizer_encode(tokenizer, text, strlen(text), add_bos, false, NULL,
                                           0, &needed, &probe);
    if (needed < 1 && probed != MR_OK) {
        return mr_error_set(err, probed, "llama: cannot encode embed text %d: %s", index,
                            probe.message);
    }
    if (needed < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: embed text %d has no tokens; pass a non-empty text", index);
    }

    int32_t *ids = malloc((size_t)needed * sizeof *ids);
    if (ids == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for %lld tokens of text %d",
                            (long long)needed, index);
    }
    int64_t written = 0;
    mr_status status = mr_tokenizer_encode(tokenizer, text, strlen(text), add_bos, false, ids,
                                           needed, &written, err);
    if (status != MR_OK) {
        free(ids);
        return status;
    }
    *tokens = ids;
    *length = written < max_tokens ? written : max_tokens;
    return MR_OK;
}

mr_status mr_llama_embed(const mr_llama *model, const mr_tokenizer *tokenizer,
                         const char *const *texts, int n, const mr_llama_embed_options *options,
                         float *out, mr_error *err) {
    mr_llama_embed_options defaults;
    if (options == NULL) {
        mr_llama_embed_options_default(&defaults);
        options = &defaults;
    }
    mr_status status = check_embed_args(model, tokenizer, texts, n, options, out, err);
    if (status != MR_OK || n == 0) {
        return status;
    }
    const mr_llama_config *c = &model->config;
    int max_tokens = options->max_tokens > 0 && options->max_tokens < c->context_length
                         ? options->max_tokens
                         : c->context_length;

    /* Encode every text first: the longest one sizes the scratch. */
    int32_t **tokens = calloc((size_t)n, sizeof *tokens);
    int64_t *lengths = calloc((size_t)n, sizeof *lengths);
    if (tokens == NULL || lengths == NULL) {
        free(tokens);
        free(lengths);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory to embed %d texts", n);
    }
    int64_t longest = 0;
    for (int i = 0; i < n && status == MR_OK; i++) {
        status = encode_text(tokenizer, texts[i], i, max_tokens, &tokens[i], &lengths[i], err);
        longest = lengths[i] > longest ? lengths[i] : longest;
    }

    /* Pack consecutive texts into passes of at most batch_tokens rows. */
    embed_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    int64_t capacity = options->batch_tokens > longest ? options->batch_tokens : longest;
    if (status == MR_OK && !scratch_alloc(&scratch, model, capacity, longest)) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "llama: no memory for an embedding pass of %lld tokens; lower "
                              "batch_tokens",
                              (long long)capacity);
    }
    int first = 0;
    while (status == MR_OK && first < n) {
        int count = 0;
        int64_t rows = 0;
        while (first + count < n && (count == 0 || rows + lengths[first + count] <= capacity)) {
            memcpy(scratch.tokens + rows, tokens[first + count],
                   (size_t)lengths[first + count] * sizeof(int32_t));
            rows += lengths[first + count];
            count++;
        }
        embed_pass(model, &scratch, lengths + first, count, options,
                   out + (int64_t)first * c->dim);
        first += count;
    }

    scratch_free(&scratch);
    for (int i = 0; i < n; i++) {
        free(tokens[i]);
    }
    free(tokens);
    free(lengths);
    return status;
}
