/*
 * Llama inference with a KV cache, on the typed weights.
 *
 * mr_llama_eval() runs its tokens in chunks of up to LLAMA_CHUNK rows.
 * Per chunk and block it writes the rotated keys and the values of every
 * row into the cache first, then each row attends to the cache's
 * positions 0..its own. The rest of a block is the row kernels of
 * llama_rows.c. A single row goes through mr_qmatvec() on the stored type,
 * or for Q8_0 and Q4_0 weights through mr_qmatvec_int8() unless
 * mr_llama_set_int8_decode() turned that off. Several rows go through
 * mr_sgemm().
 *
 * Attention uses a softmax with the maximum subtracted, as the training
 * path (llama_train.c) does. Summation orders differ from the engine's,
 * so the two paths agree to rounding, not bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "llama_internal.h"

/* Most tokens one chunk of a prompt holds; bounds the scratch memory. */
#define LLAMA_CHUNK 64

struct mr_llama_cache {
    mr_llama_config config; /* of the model the cache was made for */
    int length;
    float *keys;   /* [L][Hkv][length][D] */
    float *values; /* [L][Hkv][length][D] */

    llama_activations act; /* scratch for one chunk of up to LLAMA_CHUNK rows */
    float *scores;         /* [threads, length] */
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
    cache->keys = calloc(kv_floats, sizeof(float));
    cache->values = calloc(kv_floats, sizeof(float));
    cache->scores = malloc((size_t)cache->threads * (size_t)length * sizeof(float));
    bool allocated = llama_activations_alloc(&cache->act, model, LLAMA_CHUNK);

    /* Decoding one token is one row, and a matrix-vector product on the
     * stored type spares decoding the weight rows for a matrix product. */
    cache->act.single_row_matvec = true;
    if (!allocated || cache->keys == NULL || cache->values == NULL || cache->scores == NULL) {
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
    llama_activations_free(&cache->act);
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
 * Attention of rows at positions first..first+rows-1 over the cache of
 * layer, into cache->act.att [rows, Hq D]. (row, head) pairs run in
 * parallel, each with its own score row, so every sum has a fixed order.
 * It stays apart from llama_embed.c's attention, which has no cache and
 * runs each whole text as BLAS products.
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
            const float *q = cache->act.q + (r * c->heads + h) * dim;
            float *out = cache->act.att + (r * c->heads + h) * dim;

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
            memcpy(cache->keys + at, cache->act.k + (r * c->kv_heads + h) * dim,
                   (size_t)dim * sizeof(float));
            memcpy(cache->values + at, cache->act.v + (r * c->kv_heads + h) * dim,
                   (size_t)dim * sizeof(float));
        }
    }
}

/* Runs one block on the chunk in cache->act.x [rows, C]. */
static void block_rows(const mr_llama *model, mr_llama_cache *cache, int layer, int first,
                       int64_t rows) {
    llama_block_qkv(model, &cache->act, layer, rows);
    store_kv(cache, layer, first, rows);
    attention_rows(cache, layer, first, rows);
    llama_block_finish(model, &cache->act, layer, rows);
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
    /* The model's decode path may have changed since the last call. */
    cache->act.int8_matvec = !model->float_decode;

    const mr_llama_config *c = &model->config;
    const mr_llama_weight *embedding = &model->weights[model->token_embd];
    const mr_llama_weight *output = &model->weights[model->output];
    const float *output_norm = model->weights[model->output_norm].data;
    llama_activations *act = &cache->act;

    for (int done = 0; done < n; done += LLAMA_CHUNK) {
        int64_t rows = n - done < LLAMA_CHUNK ? n - done : LLAMA_CHUNK;
        int first = pos + done;

        /* Embed, then run every block. */
        for (int64_t r = 0; r < rows; r++) {
            llama_weight_row(embedding, tokens[done + r], act->x + r * c->dim);
            llama_rope_angles(c, first + r, act->cos_sin + r * c->head_dim);
        }
        for (int layer = 0; layer < c->layers; layer++) {
            block_rows(model, cache, layer, first, rows);
        }

        /* Logits of every row, or of the last row of the last chunk. */
        bool last_chunk = done + rows == n;
        if (mode == MR_LLAMA_LOGITS_ALL) {
            llama_rms_norm_rows(act->x, output_norm, c->rms_eps, rows, c->dim, act->h);
            llama_weight_product(act, output, NULL, act->h, rows,
                                 logits + (int64_t)done * c->vocab_size);
        } else if (mode == MR_LLAMA_LOGITS_LAST && last_chunk) {
            const float *x_last = act->x + (rows - 1) * c->dim;
            llama_rms_norm_rows(x_last, output_norm, c->rms_eps, 1, c->dim, act->h);
            llama_weight_product(act, output, NULL, act->h, 1, logits);
        }
    }
    return MR_OK;
}
