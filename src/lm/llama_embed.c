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
 * The arithmetic follows llama_infer.c: RMSNorm sums in double, rotary
 * angles in double as the engine's rope computes them, and attention
 * subtracts the maximum score before exp. Attention runs per text as BLAS
 * products. A text's vector depends on the other texts of its pass only
 * through the row count of the projections, as far as the BLAS library
 * blocks rows differently for different row counts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/blas.h"
#include "llama_internal.h"
#include "multiround/tokenizer.h"

/* Weight rows decoded at once for a product on a non-F32 type. */
#define EMBED_DECODE_ROWS 256

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
    int64_t capacity;   /* rows */
    int64_t max_length; /* longest text, for the attention scores */
    int32_t *tokens;    /* [rows] */
    int64_t *starts;    /* [rows] first row of the row's text */
    float *x;           /* [rows, C] residual stream */
    float *h;           /* [rows, C] normalised input of a sublayer */
    float *q;           /* [rows, Hq D] */
    float *k;           /* [rows, Hkv D] */
    float *v;           /* [rows, Hkv D] */
    float *att;         /* [rows, Hq D] */
    float *gate;        /* [rows, F] */
    float *up;          /* [rows, F] */
    float *proj;        /* [rows, C] */
    float *cos_sin;     /* [rows, D]: D/2 cosines then D/2 sines */
    float *decoded;     /* [EMBED_DECODE_ROWS, widest row] */
    float *scores;      /* [max_length, max_length] attention of one head */
} embed_scratch;

/* Frees the buffers of scratch. */
static void scratch_free(embed_scratch *s) {
    free(s->tokens);
    free(s->starts);
    free(s->x);
    free(s->h);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->proj);
    free(s->cos_sin);
    free(s->decoded);
    free(s->scores);
    memset(s, 0, sizeof *s);
}

/* Allocates scratch for rows token rows and texts of up to max_length
 * tokens. Returns false when memory runs out. */
static bool scratch_alloc(embed_scratch *s, const mr_llama *model, int64_t rows,
                          int64_t max_length) {
    const mr_llama_config *c = &model->config;
    size_t r = (size_t)rows;
    memset(s, 0, sizeof *s);
    s->capacity = rows;
    s->max_length = max_length;

    s->tokens = malloc(r * sizeof *s->tokens);
    s->starts = malloc(r * sizeof *s->starts);
    s->x = malloc(r * (size_t)c->dim * sizeof(float));
    s->h = malloc(r * (size_t)c->dim * sizeof(float));
    s->q = malloc(r * (size_t)llama_q_width(c) * sizeof(float));
    s->k = malloc(r * (size_t)llama_kv_width(c) * sizeof(float));
    s->v = malloc(r * (size_t)llama_kv_width(c) * sizeof(float));
    s->att = malloc(r * (size_t)llama_q_width(c) * sizeof(float));
    s->gate = malloc(r * (size_t)c->ffn_dim * sizeof(float));
    s->up = malloc(r * (size_t)c->ffn_dim * sizeof(float));
    s->proj = malloc(r * (size_t)c->dim * sizeof(float));
    s->cos_sin = malloc(r * (size_t)c->head_dim * sizeof(float));
    s->decoded = malloc((size_t)EMBED_DECODE_ROWS * llama_widest_row(model) * sizeof(float));
    s->scores = malloc((size_t)max_length * (size_t)max_length * sizeof(float));
    if (s->tokens == NULL || s->starts == NULL || s->x == NULL || s->h == NULL ||
        s->q == NULL || s->k == NULL || s->v == NULL || s->att == NULL || s->gate == NULL ||
        s->up == NULL || s->proj == NULL || s->cos_sin == NULL || s->decoded == NULL ||
        s->scores == NULL) {
        scratch_free(s);
        return false;
    }
    return true;
}

/*
 * y [rows, out] = x [rows, in] W^T (+ bias) for a weight with ne = [in,
 * out]. F32 weights go straight to BLAS. Other types are decoded
 * EMBED_DECODE_ROWS rows at a time into decoded first.
 */
static void weight_product(const mr_llama_weight *w, const mr_llama_weight *bias,
                           const float *x, int64_t rows, float *y, float *decoded) {
    int64_t in = w->ne[0], out = w->ne[1];
    if (w->type == MR_QTYPE_F32) {
        mr_sgemm(false, true, rows, out, in, 1.0f, x, in, w->data, in, 0.0f, y, out);
    } else {
        for (int64_t first = 0; first < out; first += EMBED_DECODE_ROWS) {
            int64_t count = out - first < EMBED_DECODE_ROWS ? out - first : EMBED_DECODE_ROWS;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < count; r++) {
                llama_weight_row(w, first + r, decoded + r * in);
            }
            mr_sgemm(false, true, rows, count, in, 1.0f, x, in, decoded, in, 0.0f, y + first,
                     out);
        }
    }

    if (bias != NULL) {
        const float *b = bias->data;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < out; i++) {
                y[r * out + i] += b[i];
            }
        }
    }
}

/* dst = src / sqrt(mean(src^2) + eps) * weight for each row of width n. */
static void rms_norm_rows(const float *src, const float *weight, float eps, int64_t rows,
                          int64_t n, float *dst) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = src + r * n;
        float *y = dst + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            sum += (double)x[i] * x[i];
        }
        float inv = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) {
            y[i] = x[i] * inv * weight[i];
        }
    }
}

/* Fills the cos/sin table of every row for its position in its own text. */
static void rope_table(const mr_llama_config *c, const int64_t *starts, int64_t rows,
                       float *cos_sin) {
    int64_t half = c->head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double pos = (double)(r - starts[r]);
        for (int64_t i = 0; i < half; i++) {
            double angle =
                pos * pow((double)c->rope_base, -2.0 * (double)i / (double)c->head_dim);
            cos_sin[r * c->head_dim + i] = (float)cos(angle);
            cos_sin[r * c->head_dim + half + i] = (float)sin(angle);
        }
    }
}

/* Rotates each of the heads of every row [rows, heads D] by its angles. */
static void rope_rows(const mr_llama_config *c, const float *cos_sin, int64_t rows, int heads,
                      float *x) {
    int64_t dim = c->head_dim, half = dim / 2;
    bool adjacent = c->rope_layout == MR_ROPE_ADJACENT;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *cs = cos_sin + r * dim;
        for (int h = 0; h < heads; h++) {
            float *head = x + (r * heads + h) * dim;
            for (int64_t i = 0; i < half; i++) {
                int64_t ia = adjacent ? 2 * i : i;
                int64_t ib = adjacent ? 2 * i + 1 : i + half;
                float a = head[ia], b = head[ib];
                head[ia] = a * cs[i] - b * cs[half + i];
                head[ib] = a * cs[half + i] + b * cs[i];
            }
        }
    }
}

/*
 * Causal attention of the text at rows start..start+length-1 over its own
 * rows, into s->att. Per head, the scores [T, T] and the weighted values
 * are two BLAS products whose sizes depend on the text alone, so packing
 * does not change them. The products also fill the masked upper triangle,
 * which the softmax then zeroes: twice the minimal work, but far faster
 * than scalar loops over heads of a few dimensions.
 */
static void attention_text(const mr_llama_config *c, embed_scratch *s, int64_t start,
                           int64_t length) {
    int64_t dim = c->head_dim;
    int64_t q_width = llama_q_width(c), kv_width = llama_kv_width(c);
    int group = c->heads / c->kv_heads;
    float scale = 1.0f / sqrtf((float)dim);
    float *scores = s->scores;

    for (int h = 0; h < c->heads; h++) {
        const float *q = s->q + start * q_width + (int64_t)h * dim;
        const float *keys = s->k + start * kv_width + (int64_t)(h / group) * dim;
        const float *values = s->v + start * kv_width + (int64_t)(h / group) * dim;
        float *out = s->att + start * q_width + (int64_t)h * dim;
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

/* Adds add [n] to x [n] in place. */
static void add_rows(float *x, const float *add, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        x[i] += add[i];
    }
}

/* Runs block layer on the packed rows in s->x. */
static void block_rows(const mr_llama *model, embed_scratch *s, int layer, int64_t rows) {
    const mr_llama_config *c = &model->config;
    int64_t dim = c->dim;

    /* Attention. */
    rms_norm_rows(s->x, llama_block_weight(model, layer, LLAMA_ATTN_NORM)->data, c->rms_eps,
                  rows, dim, s->h);
    weight_product(llama_block_weight(model, layer, LLAMA_ATTN_Q),
                   llama_block_weight(model, layer, LLAMA_ATTN_Q_BIAS), s->h, rows, s->q,
                   s->decoded);
    weight_product(llama_block_weight(model, layer, LLAMA_ATTN_K),
                   llama_block_weight(model, layer, LLAMA_ATTN_K_BIAS), s->h, rows, s->k,
                   s->decoded);
    weight_product(llama_block_weight(model, layer, LLAMA_ATTN_V),
                   llama_block_weight(model, layer, LLAMA_ATTN_V_BIAS), s->h, rows, s->v,
                   s->decoded);
    rope_rows(c, s->cos_sin, rows, c->heads, s->q);
    rope_rows(c, s->cos_sin, rows, c->kv_heads, s->k);
    attention_rows(c, s, rows);
    weight_product(llama_block_weight(model, layer, LLAMA_ATTN_OUTPUT), NULL, s->att, rows,
                   s->proj, s->decoded);
    add_rows(s->x, s->proj, rows * dim);

    /* SwiGLU feed-forward. */
    rms_norm_rows(s->x, llama_block_weight(model, layer, LLAMA_FFN_NORM)->data, c->rms_eps,
                  rows, dim, s->h);
    weight_product(llama_block_weight(model, layer, LLAMA_FFN_GATE), NULL, s->h, rows,
                   s->gate, s->decoded);
    weight_product(llama_block_weight(model, layer, LLAMA_FFN_UP), NULL, s->h, rows, s->up,
                   s->decoded);
    int64_t hidden = rows * c->ffn_dim;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < hidden; i++) {
        float g = s->gate[i];
        s->gate[i] = g / (1.0f + expf(-g)) * s->up[i];
    }
    weight_product(llama_block_weight(model, layer, LLAMA_FFN_DOWN), NULL, s->gate, rows,
                   s->proj, s->decoded);
    add_rows(s->x, s->proj, rows * dim);
}

/*
 * Pools the normalised states s->h of one text (rows start..start+length-1)
 * into out [C], accumulating in double, and L2-normalises it if asked.
 */
static void pool_text(const embed_scratch *s, int64_t dim, int64_t start, int64_t length,
                      const mr_llama_embed_options *options, float *out) {
    if (options->pooling == MR_LLAMA_POOLING_LAST) {
        memcpy(out, s->h + (start + length - 1) * dim, (size_t)dim * sizeof(float));
    } else {
        for (int64_t i = 0; i < dim; i++) {
            double sum = 0.0;
            for (int64_t r = start; r < start + length; r++) {
                sum += s->h[r * dim + i];
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

    /* Embed, then run every block and the final RMSNorm. */
    const mr_llama_weight *embedding = &model->weights[model->token_embd];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        llama_weight_row(embedding, s->tokens[r], s->x + r * c->dim);
    }
    rope_table(c, s->starts, rows, s->cos_sin);
    for (int layer = 0; layer < c->layers; layer++) {
        block_rows(model, s, layer, rows);
    }
    rms_norm_rows(s->x, model->weights[model->output_norm].data, c->rms_eps, rows, c->dim,
                  s->h);

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
