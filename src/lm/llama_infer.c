/*
 * Llama inference with a KV cache, on the typed weights.
 *
 * mr_llama_eval() runs its tokens in chunks of up to LLAMA_CHUNK rows.
 * Per chunk and block it writes the rotated keys and the values of every
 * row into the cache first, then each row attends to the cache's
 * positions 0..its own. A single row goes through mr_qmatvec() on the
 * stored type, or for Q8_0 and Q4_0 weights through mr_qmatvec_int8()
 * unless mr_llama_set_int8_decode() turned that off. Several rows go
 * through mr_sgemm(): directly on F32 weights, and for other types on rows
 * decoded LLAMA_DECODE_ROWS at a time.
 *
 * The arithmetic mirrors the training path (llama_train.c): rotary angles
 * are computed in double as the engine's rope does, and attention uses a
 * softmax with the maximum subtracted. Summation orders differ from the
 * engine's, so the two paths agree to rounding, not bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/blas.h"
#include "llama_internal.h"

/* Most tokens one chunk of a prompt holds; bounds the scratch memory. */
#define LLAMA_CHUNK 64

/* Weight rows decoded at once for a batched product on quantised types. */
#define LLAMA_DECODE_ROWS 256

struct mr_llama_cache {
    mr_llama_config config; /* of the model the cache was made for */
    int length;
    float *keys;   /* [L][Hkv][length][D] */
    float *values; /* [L][Hkv][length][D] */

    /* Scratch for one chunk of up to LLAMA_CHUNK rows. */
    float *x;       /* [rows, C] residual stream */
    float *h;       /* [rows, C] normalised input of a sublayer */
    float *q;       /* [rows, Hq D] */
    float *k;       /* [rows, Hkv D] */
    float *v;       /* [rows, Hkv D] */
    float *att;     /* [rows, Hq D] attention output */
    float *gate;    /* [rows, F] */
    float *up;      /* [rows, F] */
    float *proj;    /* [rows, C] sublayer output */
    float *cos_sin; /* [rows, D] cosines then sines of each pair */
    float *decoded; /* [LLAMA_DECODE_ROWS, max input width] */
    void *int8_x;   /* one row of max input width quantised for mr_qmatvec_int8 */
    float *scores;  /* [threads, length] */
    int threads;
};

mr_llama_cache *mr_llama_cache_create(const mr_llama *model, int length, mr_error *err) {
    const mr_llama_config *c = &model->config;
    if (length < 1 || length > c->context_length) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "llama: cache length must be in [1, %d] (the context length), got %d",
                     c->context_length, length);
        return NULL;
    }
    mr_llama_cache *cache = calloc(1, sizeof *cache);
    if (cache == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "llama: no memory for a cache");
        return NULL;
    }
    cache->config = *c;
    cache->length = length;
    cache->threads = 1;
#ifdef _OPENMP
    cache->threads = omp_get_max_threads();
#endif

    size_t kv_floats = (size_t)c->layers * (size_t)llama_kv_width(c) * (size_t)length;
    size_t rows = LLAMA_CHUNK;
    size_t widest_in = (size_t)c->dim;
    widest_in = (size_t)llama_q_width(c) > widest_in ? (size_t)llama_q_width(c) : widest_in;
    widest_in = (size_t)c->ffn_dim > widest_in ? (size_t)c->ffn_dim : widest_in;

    cache->keys = calloc(kv_floats, sizeof(float));
    cache->values = calloc(kv_floats, sizeof(float));
    cache->x = malloc(rows * (size_t)c->dim * sizeof(float));
    cache->h = malloc(rows * (size_t)c->dim * sizeof(float));
    cache->q = malloc(rows * (size_t)llama_q_width(c) * sizeof(float));
    cache->k = malloc(rows * (size_t)llama_kv_width(c) * sizeof(float));
    cache->v = malloc(rows * (size_t)llama_kv_width(c) * sizeof(float));
    cache->att = malloc(rows * (size_t)llama_q_width(c) * sizeof(float));
    cache->gate = malloc(rows * (size_t)c->ffn_dim * sizeof(float));
    cache->up = malloc(rows * (size_t)c->ffn_dim * sizeof(float));
    cache->proj = malloc(rows * (size_t)c->dim * sizeof(float));
    cache->cos_sin = malloc(rows * (size_t)c->head_dim * sizeof(float));
    cache->decoded = malloc((size_t)LLAMA_DECODE_ROWS * widest_in * sizeof(float));
    cache->int8_x = malloc(mr_qmatvec_int8_scratch_bytes((int64_t)widest_in));
    cache->scores = malloc((size_t)cache->threads * (size_t)length * sizeof(float));
    if (cache->keys == NULL || cache->values == NULL || cache->x == NULL || cache->h == NULL ||
        cache->q == NULL || cache->k == NULL || cache->v == NULL || cache->att == NULL ||
        cache->gate == NULL || cache->up == NULL || cache->proj == NULL ||
        cache->cos_sin == NULL || cache->decoded == NULL || cache->int8_x == NULL ||
        cache->scores == NULL) {
        mr_llama_cache_free(cache);
        mr_error_set(err, MR_ERR_NO_MEMORY,
                     "llama: no memory for a cache of %d positions (%.1f MiB of keys and values)",
                     length, 2.0 * (double)kv_floats * sizeof(float) / 1048576.0);
        return NULL;
    }
    return cache;
}

void mr_llama_cache_free(mr_llama_cache *cache) {
    if (cache == NULL) {
        return;
    }
    free(cache->keys);
    free(cache->values);
    free(cache->x);
    free(cache->h);
    free(cache->q);
    free(cache->k);
    free(cache->v);
    free(cache->att);
    free(cache->gate);
    free(cache->up);
    free(cache->proj);
    free(cache->cos_sin);
    free(cache->decoded);
    free(cache->int8_x);
    free(cache->scores);
    free(cache);
}

int mr_llama_cache_length(const mr_llama_cache *cache) {
    return cache->length;
}

void mr_llama_set_int8_decode(mr_llama *model, bool enabled) {
    model->float_decode = !enabled;
}

bool mr_llama_int8_decode(const mr_llama *model) {
    return !model->float_decode;
}

/*
 * y [rows, out] = x [rows, in] @ W^T (+ bias) for a weight with ne = [in,
 * out], using the cache's scratch memory.
 */
static void weight_product(const mr_llama *model, mr_llama_cache *cache,
                           const mr_llama_weight *w, const mr_llama_weight *bias,
                           const float *x, int64_t rows, float *y) {
    int64_t in = w->ne[0], out = w->ne[1];
    float *decoded = cache->decoded;
    if (rows == 1 && model->float_decode) {
        mr_qmatvec(w->type, w->data, out, in, x, y);
    } else if (rows == 1) {
        mr_qmatvec_int8(w->type, w->data, out, in, x, y, cache->int8_x);
    } else if (w->type == MR_QTYPE_F32) {
        mr_sgemm(false, true, rows, out, in, 1.0f, x, in, w->data, in, 0.0f, y, out);
    } else {
        for (int64_t first = 0; first < out; first += LLAMA_DECODE_ROWS) {
            int64_t count = out - first < LLAMA_DECODE_ROWS ? out - first : LLAMA_DECODE_ROWS;
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
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < out; i++) {
                y[r * out + i] += b[i];
            }
        }
    }
}

/* dst = src / sqrt(mean(src^2) + eps) * weight, per row of width n. */
static void rms_norm_rows(const float *src, const float *weight, float eps, int64_t rows,
                          int64_t n, float *dst) {
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

/* Fills cos_sin [rows, D]: the D/2 cosines then the D/2 sines of row r's
 * pair angles at position first + r, computed as the engine's rope does. */
static void rope_table(const mr_llama_config *c, int first, int64_t rows, float *cos_sin) {
    int64_t half = c->head_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        double pos = (double)(first + r);
        for (int64_t i = 0; i < half; i++) {
            double angle =
                pos * pow((double)c->rope_base, -2.0 * (double)i / (double)c->head_dim);
            cos_sin[r * c->head_dim + i] = (float)cos(angle);
            cos_sin[r * c->head_dim + half + i] = (float)sin(angle);
        }
    }
}

/* Rotates each head of rows [rows, heads * D] by the table's angles. */
static void rope_rows(const mr_llama_config *c, const float *cos_sin, int64_t rows, int heads,
                      float *x) {
    int64_t dim = c->head_dim, half = dim / 2;
    bool adjacent = c->rope_layout == MR_ROPE_ADJACENT;
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
 * Attention of rows at positions first..first+rows-1 over the cache of
 * layer, into cache->att [rows, Hq D]. (row, head) pairs run in parallel,
 * each with its own score row, so every sum has a fixed order.
 */
static void attention_rows(mr_llama_cache *cache, int layer, int first, int64_t rows) {
    const mr_llama_config *c = &cache->config;
    int64_t dim = c->head_dim, length = cache->length;
    int group = c->heads / c->kv_heads;
    float scale = 1.0f / sqrtf((float)dim);
    int64_t pairs = rows * c->heads;
    int64_t layer_offset = (int64_t)layer * c->kv_heads * length * dim;

#pragma omp parallel
    {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        float *scores = cache->scores + (int64_t)thread * length;
#pragma omp for schedule(static)
        for (int64_t pair = 0; pair < pairs; pair++) {
            int64_t r = pair / c->heads;
            int h = (int)(pair % c->heads);
            int64_t visible = first + r + 1;
            int64_t kv_offset = layer_offset + (int64_t)(h / group) * length * dim;
            const float *keys = cache->keys + kv_offset;
            const float *values = cache->values + kv_offset;
            const float *q = cache->q + (r * c->heads + h) * dim;
            float *out = cache->att + (r * c->heads + h) * dim;

            float max = -INFINITY;
            for (int64_t j = 0; j < visible; j++) {
                float dot = 0.0f;
                for (int64_t i = 0; i < dim; i++) {
                    dot += q[i] * keys[j * dim + i];
                }
                scores[j] = scale * dot;
                max = scores[j] > max ? scores[j] : max;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < visible; j++) {
                scores[j] = expf(scores[j] - max);
                sum += scores[j];
            }

            float inv = 1.0f / sum;
            for (int64_t i = 0; i < dim; i++) {
                out[i] = 0.0f;
            }
            for (int64_t j = 0; j < visible; j++) {
                float p = scores[j] * inv;
                for (int64_t i = 0; i < dim; i++) {
                    out[i] += p * values[j * dim + i];
                }
            }
        }
    }
}

/* Copies the chunk's rotated keys and values into the cache of layer at
 * positions first..first+rows-1. */
static void store_kv(mr_llama_cache *cache, int layer, int first, int64_t rows) {
    const mr_llama_config *c = &cache->config;
    int64_t dim = c->head_dim, length = cache->length;
    for (int h = 0; h < c->kv_heads; h++) {
        int64_t base = ((int64_t)layer * c->kv_heads + h) * length * dim;
        for (int64_t r = 0; r < rows; r++) {
            int64_t at = base + (first + r) * dim;
            memcpy(cache->keys + at, cache->k + (r * c->kv_heads + h) * dim,
                   (size_t)dim * sizeof(float));
            memcpy(cache->values + at, cache->v + (r * c->kv_heads + h) * dim,
                   (size_t)dim * sizeof(float));
        }
    }
}

/* Runs one block on the chunk in cache->x [rows, C]. */
static void block_rows(const mr_llama *model, mr_llama_cache *cache, int layer, int first,
                       int64_t rows) {
    const mr_llama_config *c = &model->config;
    int64_t dim = c->dim;

    /* Attention. */
    rms_norm_rows(cache->x, llama_block_weight(model, layer, LLAMA_ATTN_NORM)->data, c->rms_eps,
                  rows, dim, cache->h);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_ATTN_Q),
                   llama_block_weight(model, layer, LLAMA_ATTN_Q_BIAS), cache->h, rows,
                   cache->q);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_ATTN_K),
                   llama_block_weight(model, layer, LLAMA_ATTN_K_BIAS), cache->h, rows,
                   cache->k);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_ATTN_V),
                   llama_block_weight(model, layer, LLAMA_ATTN_V_BIAS), cache->h, rows,
                   cache->v);
    rope_rows(c, cache->cos_sin, rows, c->heads, cache->q);
    rope_rows(c, cache->cos_sin, rows, c->kv_heads, cache->k);
    store_kv(cache, layer, first, rows);
    attention_rows(cache, layer, first, rows);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_ATTN_OUTPUT), NULL,
                   cache->att, rows, cache->proj);
    for (int64_t i = 0; i < rows * dim; i++) {
        cache->x[i] += cache->proj[i];
    }

    /* SwiGLU feed-forward. */
    rms_norm_rows(cache->x, llama_block_weight(model, layer, LLAMA_FFN_NORM)->data, c->rms_eps,
                  rows, dim, cache->h);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_FFN_GATE), NULL,
                   cache->h, rows, cache->gate);
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_FFN_UP), NULL, cache->h,
                   rows, cache->up);
    int64_t hidden = rows * c->ffn_dim;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < hidden; i++) {
        float g = cache->gate[i];
        cache->gate[i] = g / (1.0f + expf(-g)) * cache->up[i];
    }
    weight_product(model, cache, llama_block_weight(model, layer, LLAMA_FFN_DOWN), NULL,
                   cache->gate, rows, cache->proj);
    for (int64_t i = 0; i < rows * dim; i++) {
        cache->x[i] += cache->proj[i];
    }
}

/* Checks the arguments of mr_llama_eval; fills err when they are invalid. */
static mr_status check_eval_args(const mr_llama *model, const mr_llama_cache *cache,
                                 const int32_t *tokens, int n, int pos, const float *logits,
                                 mr_llama_logits_mode mode, mr_error *err) {
    const mr_llama_config *c = &model->config;
    if (cache->config.layers != c->layers || cache->config.kv_heads != c->kv_heads ||
        cache->config.head_dim != c->head_dim || cache->config.dim != c->dim ||
        cache->config.vocab_size != c->vocab_size || cache->config.ffn_dim != c->ffn_dim ||
        cache->config.heads != c->heads) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: the cache was created for a model of another shape");
    }
    if (n < 1 || tokens == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: eval needs at least one token, got n = %d", n);
    }
    if (pos < 0 || (int64_t)pos + n > cache->length) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: positions %d..%lld do not fit a cache of %d positions", pos,
                            (long long)pos + n - 1, cache->length);
    }
    if (mode != MR_LLAMA_LOGITS_NONE && mode != MR_LLAMA_LOGITS_LAST &&
        mode != MR_LLAMA_LOGITS_ALL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "llama: unknown logits mode %d",
                            (int)mode);
    }
    if (mode != MR_LLAMA_LOGITS_NONE && logits == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "llama: logits is NULL but the mode asks for logits");
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "llama: token %d (at index %d) is outside [0, %d)", tokens[i], i,
                                c->vocab_size);
        }
    }
    return MR_OK;
}

mr_status mr_llama_eval(const mr_llama *model, mr_llama_cache *cache, const int32_t *tokens,
                        int n, int pos, float *logits, mr_llama_logits_mode mode,
                        mr_error *err) {
    mr_status status = check_eval_args(model, cache, tokens, n, pos, logits, mode, err);
    if (status != MR_OK) {
        return status;
    }

    /* Attention needs one score row per thread; the thread count may have
     * grown since the cache was made. */
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (threads > cache->threads) {
        float *scores = realloc(cache->scores,
                                (size_t)threads * (size_t)cache->length * sizeof(float));
        if (scores == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "llama: no memory for attention scores of %d threads", threads);
        }
        cache->scores = scores;
        cache->threads = threads;
    }
    const mr_llama_config *c = &model->config;
    const mr_llama_weight *embedding = &model->weights[model->token_embd];
    const mr_llama_weight *output = &model->weights[model->output];

    for (int done = 0; done < n; done += LLAMA_CHUNK) {
        int64_t rows = n - done < LLAMA_CHUNK ? n - done : LLAMA_CHUNK;
        int first = pos + done;

        /* Embed, then run every block. */
        for (int64_t r = 0; r < rows; r++) {
            llama_weight_row(embedding, tokens[done + r], cache->x + r * c->dim);
        }
        rope_table(c, first, rows, cache->cos_sin);
        for (int layer = 0; layer < c->layers; layer++) {
            block_rows(model, cache, layer, first, rows);
        }

        /* Logits of every row, or of the last row of the last chunk. */
        bool last_chunk = done + rows == n;
        if (mode == MR_LLAMA_LOGITS_ALL) {
            rms_norm_rows(cache->x, model->weights[model->output_norm].data, c->rms_eps, rows,
                          c->dim, cache->h);
            weight_product(model, cache, output, NULL, cache->h, rows,
                           logits + (int64_t)done * c->vocab_size);
        } else if (mode == MR_LLAMA_LOGITS_LAST && last_chunk) {
            const float *x_last = cache->x + (rows - 1) * c->dim;
            rms_norm_rows(x_last, model->weights[model->output_norm].data, c->rms_eps, 1, c->dim,
                          cache->h);
            weight_product(model, cache, output, NULL, cache->h, 1, logits);
        }
    }
    return MR_OK;
}
