/*
 * Fused scaled dot-product attention with grouped-query heads, causal
 * masking and a key padding mask, forward and backward.
 *
 * Per (batch, query head) pair and query row i:
 *   s_j = scale * q_i . k_j over the visible keys j,
 *   p = softmax(s), out_i = sum_j r_j v_j,
 * with r = p, or with dropout r_j = p_j m_j / (1 - rate) for a keep mask m.
 * Hidden keys get p_j = 0. A query with no visible key outputs zeros, or
 * with MR_ATTENTION_ALL_KEYS_IF_EMPTY takes every key as visible.
 *
 * The products are plain loops in blocks of ATTENTION_BLOCK outputs that
 * the compiler keeps in vector registers. Scores (q . k_j, and do . v_j in
 * backward) read k or v transposed to [D, S] in a per-thread scratch
 * buffer, so that one block of scores is a sum of D scaled rows and needs
 * no horizontal sums. At the sizes this engine targets (T and S around
 * 50, D from 16 to 64), a GEMM call per head costs more in setup than it
 * saves. Calling BLAS from inside an OpenMP loop would also nest its
 * threads.
 *
 * q, k and v may be strided views (say, [B, T, H, D] transposed to
 * [B, H, T, D]) as long as their last dimension is contiguous; others are
 * copied. Their gradients go through the same strides.
 *
 * Forward runs (batch, query head) pairs in parallel. When recording, it
 * saves the probabilities [B, Hq, T, S] before dropout and the keep mask
 * as one byte per probability. Backward first computes dq and
 * the score gradients per (batch, query head) pair, then dk and dv per
 * (batch, kv head) pair, summing that kv head's query heads in order.
 * So no two threads write one gradient row, and every sum has a fixed
 * order whatever the thread count.
 */
#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <string.h>

#include "ctx.h"
#include "fastmath.h"
#include "internal.h"
#include "rng_hash.h"

/* Outputs per block in the product loops: 16 floats (one 512-bit or two
 * 256-bit vector registers) with AVX, else 4 floats, one SSE register.
 * GCC 12 keeps wider vector values in memory when it has to split them
 * into SSE registers. */
#ifdef __AVX__
#define ATTENTION_BLOCK 16
#else
#define ATTENTION_BLOCK 4
#endif

/* Sizes and strides shared by forward and backward. */
typedef struct attention_dims {
    int64_t batch, q_heads, kv_heads, t_len, s_len, head_dim;
    int64_t group;           /* q_heads / kv_heads */
    int64_t q_stride[3];     /* strides of q's first three dimensions */
    int64_t k_stride[3];
    int64_t v_stride[3];
    float scale;
    bool causal;
    bool all_keys_if_empty; /* MR_ATTENTION_ALL_KEYS_IF_EMPTY */
} attention_dims;

/* Dropout on the probabilities. rate 0 turns it off. */
typedef struct attention_dropout {
    float rate;
    float keep_scale;  /* 1 / (1 - rate), or 1 when off */
    uint64_t mask_key; /* probability n is kept when draw n of this key reaches rate */
} attention_dropout;

typedef struct attention_saved {
    attention_dims dims;
    attention_dropout dropout;
    float *probs;  /* [B, Hq, T, S], before dropout */
    uint8_t *kept; /* [B, Hq, T, S] keep mask, or NULL without dropout */
} attention_saved;

/* Row stride of a [D, S] transposed scratch matrix: S rounded up to whole
 * blocks, so that block_scores() may read a full last block. */
static inline int64_t transposed_stride(int64_t s_len) {
    return (s_len + ATTENTION_BLOCK - 1) / ATTENTION_BLOCK * ATTENTION_BLOCK;
}

/*
 * Copies count rows of dim floats (row r at rows + r * row_stride) into
 * out as their transpose [dim, stride], with stride from
 * transposed_stride(count), and zeroes the padding columns.
 */
static void transpose_rows(const float *rows, int64_t row_stride, int64_t count, int64_t dim,
                           float *out) {
    int64_t stride = transposed_stride(count);
    for (int64_t c = 0; c < dim; c++) {
        float *out_row = out + c * stride;
        for (int64_t r = 0; r < count; r++) {
            out_row[r] = rows[r * row_stride + c];
        }
        for (int64_t r = count; r < stride; r++) {
            out_row[r] = 0.0f;
        }
    }
}

/* ATTENTION_BLOCK floats as one GCC/Clang vector value, which the compiler
 * keeps in registers. Loads and stores go through memcpy because rows
 * need not be aligned. Helpers take these values by pointer: passing them
 * by value changes the calling convention between builds with and without
 * AVX-512, which GCC warns about. */
typedef float block_vector __attribute__((vector_size(ATTENTION_BLOCK * sizeof(float))));

/* *acc += w * p[0 .. ATTENTION_BLOCK). */
static inline void add_scaled_block(block_vector *acc, float w, const float *p) {
    block_vector v;
    memcpy(&v, p, sizeof v);
    *acc += w * v;
}

/*
 * Computes out[j] = x . y_j for j < count, where yt contains the rows y_j
 * transposed as written by transpose_rows(), with row stride stride >=
 * transposed_stride(count). Row c of yt goes to partial sum c % 4, which
 * keeps four additions in flight. The order of additions depends only on
 * dim.
 */
static void block_scores(const float *x, const float *yt, int64_t stride, int64_t dim,
                         int64_t count, float *out) {
    int64_t whole = dim - dim % 4;
    for (int64_t j0 = 0; j0 < count; j0 += ATTENTION_BLOCK) {
        const float *column = yt + j0;
        block_vector acc0 = {0.0f}, acc1 = {0.0f}, acc2 = {0.0f}, acc3 = {0.0f};
        for (int64_t c = 0; c < whole; c += 4) {
            add_scaled_block(&acc0, x[c], column + c * stride);
            add_scaled_block(&acc1, x[c + 1], column + (c + 1) * stride);
            add_scaled_block(&acc2, x[c + 2], column + (c + 2) * stride);
            add_scaled_block(&acc3, x[c + 3], column + (c + 3) * stride);
        }
        for (int64_t c = whole; c < dim; c++) {
            add_scaled_block(&acc0, x[c], column + c * stride);
        }
        block_vector sum = (acc0 + acc1) + (acc2 + acc3);
        if (count - j0 >= ATTENTION_BLOCK) {
            memcpy(out + j0, &sum, sizeof sum);
            continue;
        }
        for (int64_t j = 0; j < count - j0; j++) {
            out[j0 + j] = sum[j];
        }
    }
}

/* Zeros read in place of a row whose coefficient is 0 in add_row_combination(). */
static const float zero_block[ATTENTION_BLOCK];

/* *acc += w * (block c0 of row r) in add_row_combination(), reading
 * zero_block in place of the row when w is 0. */
static inline void add_weighted_row(block_vector *acc, float w, const float *rows,
                                    int64_t row_stride, int64_t r, int64_t c0) {
    add_scaled_block(acc, w, w != 0.0f ? rows + r * row_stride + c0 : zero_block);
}

/*
 * Adds scale * sum_r coeff[r * coeff_stride] * row_r to y[0 .. dim), for
 * count rows of dim floats at rows + r * row_stride. A row whose
 * coefficient is 0 adds nothing even where its values are not finite
 * (a masked key's value, say). Row r goes to partial sum r % 4, so the
 * order of additions depends only on count.
 */
static void add_row_combination(float *y, const float *coeff, int64_t coeff_stride,
                                const float *rows, int64_t row_stride, int64_t count,
                                int64_t dim, float scale) {
    int64_t whole = count - count % 4;
    int64_t c0 = 0;
    for (; c0 + ATTENTION_BLOCK <= dim; c0 += ATTENTION_BLOCK) {
        block_vector acc0 = {0.0f}, acc1 = {0.0f}, acc2 = {0.0f}, acc3 = {0.0f};
        for (int64_t r = 0; r < whole; r += 4) {
            add_weighted_row(&acc0, coeff[r * coeff_stride], rows, row_stride, r, c0);
            add_weighted_row(&acc1, coeff[(r + 1) * coeff_stride], rows, row_stride, r + 1, c0);
            add_weighted_row(&acc2, coeff[(r + 2) * coeff_stride], rows, row_stride, r + 2, c0);
            add_weighted_row(&acc3, coeff[(r + 3) * coeff_stride], rows, row_stride, r + 3, c0);
        }
        for (int64_t r = whole; r < count; r++) {
            add_weighted_row(&acc0, coeff[r * coeff_stride], rows, row_stride, r, c0);
        }
        block_vector sum = (acc0 + acc1) + (acc2 + acc3);
        block_vector y_block;
        memcpy(&y_block, y + c0, sizeof y_block);
        y_block += scale * sum;
        memcpy(y + c0, &y_block, sizeof y_block);
    }

    /* The last dim % ATTENTION_BLOCK columns, one row at a time. */
    for (int64_t c = c0; c < dim; c++) {
        float acc = 0.0f;
        for (int64_t r = 0; r < count; r++) {
            float w = coeff[r * coeff_stride];
            if (w != 0.0f) {
                acc += w * rows[r * row_stride + c];
            }
        }
        y[c] += scale * acc;
    }
}

/* Number of leading keys that causal masking leaves visible to query i. */
static inline int64_t causal_limit(const attention_dims *d, int64_t i) {
    if (!d->causal) {
        return d->s_len;
    }
    int64_t limit = i + d->s_len - d->t_len + 1;
    return limit < 0 ? 0 : (limit > d->s_len ? d->s_len : limit);
}

/*
 * Writes the scores of the keys j < limit that mask (may be NULL) leaves
 * visible into the row p of S floats, and 0 for the other keys, from kt,
 * the head's keys transposed by transpose_rows(). Stores their maximum in
 * max and returns false when no key is visible.
 */
static bool score_row(const attention_dims *d, const float *qi, const float *kt,
                      const float *mask, int64_t limit, float *p, float *max) {
    block_scores(qi, kt, transposed_stride(d->s_len), d->head_dim, limit, p);
    if (mask == NULL) {
        /* Without a mask every key below limit is visible: a loop without
         * branches that the compiler vectorises. */
        float top = -INFINITY;
#pragma omp simd reduction(max : top)
        for (int64_t j = 0; j < limit; j++) {
            p[j] *= d->scale;
            top = p[j] > top ? p[j] : top;
        }
        for (int64_t j = limit; j < d->s_len; j++) {
            p[j] = 0.0f;
        }
        *max = top;
        return limit > 0;
    }
    bool any = false;
    *max = -INFINITY;
    for (int64_t j = 0; j < d->s_len; j++) {
        if (j >= limit || (mask != NULL && mask[j] == 0.0f)) {
            p[j] = 0.0f;
            continue;
        }
        float s = d->scale * p[j];
        p[j] = s;
        *max = s > *max ? s : *max;
        any = true;
    }
    return any;
}

/* Keep decision for probability n of the [B, Hq, T, S] tensor; the same
 * draw as mr_tensor_dropout's for element n. */
static inline bool dropout_keeps(const attention_dropout *drop, int64_t n) {
    return mr_rng_bits_to_uniform(rng_hash(drop->mask_key, (uint64_t)n)) >= drop->rate;
}

/* Floats of per-thread scratch that the forward and backward kernels use:
 * a [D, S] transposed key or value matrix plus two rows of S floats and
 * one column of T. */
static int64_t scratch_floats(const attention_dims *d) {
    return d->head_dim * transposed_stride(d->s_len) + 2 * d->s_len + d->t_len + 1;
}

/*
 * Computes one (batch b, query head h) pair: probabilities into probs
 * (T rows of S when all_rows, else one reused row of S) and the output
 * rows into out [T, D]. With dropout, kept receives the pair's keep mask
 * [T, S] when not NULL. scratch has room for scratch_floats(d) floats.
 */
static void attention_forward_pair(const attention_dims *d, const attention_dropout *drop,
                                   int64_t b, int64_t h, const float *q, const float *k,
                                   const float *v, const float *key_mask, float *probs,
                                   bool all_rows, uint8_t *kept, float *out, float *scratch) {
    int64_t kvh = h / d->group;
    int64_t dim = d->head_dim, s_len = d->s_len;
    const float *qh = q + b * d->q_stride[0] + h * d->q_stride[1];
    const float *kh = k + b * d->k_stride[0] + kvh * d->k_stride[1];
    const float *vh = v + b * d->v_stride[0] + kvh * d->v_stride[1];
    const float *mask = key_mask != NULL ? key_mask + b * s_len : NULL;
    int64_t first_prob = (b * d->q_heads + h) * d->t_len * s_len;
    float *kt = scratch;
    float *weights = kt + dim * transposed_stride(s_len);
    transpose_rows(kh, d->k_stride[2], s_len, dim, kt);

    for (int64_t i = 0; i < d->t_len; i++) {
        float *p = all_rows ? probs + i * s_len : probs;
        float *o = out + i * dim;
        const float *qi = qh + i * d->q_stride[2];
        uint8_t *kept_row = kept != NULL ? kept + i * s_len : NULL;
        int64_t limit = causal_limit(d, i);
        const float *row_mask = mask;
        for (int64_t c = 0; c < dim; c++) {
            o[c] = 0.0f;
        }
        if (kept_row != NULL) {
            memset(kept_row, 0, (size_t)s_len);
        }

        /* Scores of the visible keys. A query that sees none either
         * outputs zeros or, with the flag, sees every key. */
        float max;
        bool any = score_row(d, qi, kt, row_mask, limit, p, &max);
        if (!any && d->all_keys_if_empty) {
            limit = s_len;
            row_mask = NULL;
            any = score_row(d, qi, kt, row_mask, limit, p, &max);
        }
        if (!any) {
            continue;
        }

        /* Softmax over the visible keys, then the sum of values weighted
         * by the probabilities after dropout. */
        if (row_mask == NULL) {
            for (int64_t j = 0; j < limit; j++) {
                p[j] = mr_expf(p[j] - max);
            }
        } else {
            for (int64_t j = 0; j < limit; j++) {
                float e = mr_expf(p[j] - max);
                p[j] = row_mask[j] != 0.0f ? e : 0.0f;
            }
        }
        /* The simd reduction splits the sum across vector lanes in an
         * order fixed at compile time, so it does not depend on the thread
         * count. */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < limit; j++) {
            sum += p[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < limit; j++) {
            p[j] *= inv;
        }
        const float *w = p;
        if (drop->rate > 0.0f) {
            for (int64_t j = 0; j < limit; j++) {
                weights[j] = p[j];
                if (p[j] != 0.0f) {
                    bool keep = dropout_keeps(drop, first_prob + i * s_len + j);
                    if (kept_row != NULL) {
                        kept_row[j] = keep;
                    }
                    weights[j] = keep ? p[j] * drop->keep_scale : 0.0f;
                }
            }
            w = weights;
        }
        add_row_combination(o, w, 1, vh, d->v_stride[2], limit, dim, 1.0f);
    }
}

/* Number of leading keys whose probabilities may be non-zero for query i.
 * With the flag, a query that saw no key has them all. */
static inline int64_t backward_limit(const attention_dims *d, int64_t i) {
    return d->all_keys_if_empty ? d->s_len : causal_limit(d, i);
}

/* The first query whose probability of key j may be non-zero: under
 * causal masking, query i sees key j from i = j - (S - T) on, unless the
 * flag gives a query that sees no key every key. */
static inline int64_t first_query(const attention_dims *d, int64_t j) {
    if (!d->causal || d->all_keys_if_empty) {
        return 0;
    }
    int64_t first = j - (d->s_len - d->t_len);
    return first < 0 ? 0 : (first > d->t_len ? d->t_len : first);
}

/*
 * Backward, step 1, for one (b, h) pair: the score gradients
 * ds_j = p_j * (dp_j - sum_l p_l dp_l) with dp_j = m_j c do_i . v_j, where
 * m is the keep mask kept [T, S] (all ones when NULL) and c = keep_scale.
 * Stores them in dscores [T, S] when not NULL, and adds
 * dq_i += scale * sum_j ds_j k_j when dq is not NULL. scratch has room
 * for scratch_floats(d) floats.
 */
static void attention_backward_scores(const attention_dims *d, float keep_scale, int64_t b,
                                      int64_t h, const float *probs, const uint8_t *kept,
                                      const float *dout, const float *k, const float *v,
                                      float *dscores, float *dq, float *scratch) {
    int64_t kvh = h / d->group;
    int64_t dim = d->head_dim, s_len = d->s_len;
    const float *kh = k + b * d->k_stride[0] + kvh * d->k_stride[1];
    const float *vh = v + b * d->v_stride[0] + kvh * d->v_stride[1];
    float *dqh = dq != NULL ? dq + b * d->q_stride[0] + h * d->q_stride[1] : NULL;
    float *vt = scratch;
    float *dp = vt + dim * transposed_stride(s_len);
    float *g_row = dp + s_len;
    transpose_rows(vh, d->v_stride[2], s_len, dim, vt);

    for (int64_t i = 0; i < d->t_len; i++) {
        const float *p = probs + i * s_len;
        const uint8_t *kept_row = kept != NULL ? kept + i * s_len : NULL;
        const float *doi = dout + i * dim;
        int64_t limit = backward_limit(d, i);

        block_scores(doi, vt, transposed_stride(s_len), dim, limit, dp);
        float dot = 0.0f;
        for (int64_t j = 0; j < limit; j++) {
            bool used = p[j] != 0.0f && (kept_row == NULL || kept_row[j]);
            dp[j] = used ? keep_scale * dp[j] : 0.0f;
            dot += p[j] * dp[j];
        }
        float *ds = dscores != NULL ? dscores + i * s_len : g_row;
        for (int64_t j = 0; j < s_len; j++) {
            ds[j] = j < limit ? p[j] * (dp[j] - dot) : 0.0f;
        }
        if (dqh != NULL) {
            add_row_combination(dqh + i * d->q_stride[2], ds, 1, kh, d->k_stride[2], limit, dim,
                                d->scale);
        }
    }
}

/*
 * Backward, step 2, for one (b, kv head) pair: over its query heads in
 * order, dk_j += scale * sum_i ds_ij q_i and dv_j += sum_i r_ij do_i with
 * r the probabilities after dropout (p itself when kept is NULL).
 * dk or dv may be NULL. scratch has room for scratch_floats(d) floats.
 */
static void attention_backward_kv(const attention_dims *d, float keep_scale, int64_t b,
                                  int64_t kvh, const float *probs, const uint8_t *kept,
                                  const float *dscores, const float *dout, const float *q,
                                  float *dk, float *dv, float *scratch) {
    int64_t dim = d->head_dim, s_len = d->s_len, t_len = d->t_len;
    float *dkh = dk != NULL ? dk + b * d->k_stride[0] + kvh * d->k_stride[1] : NULL;
    float *dvh = dv != NULL ? dv + b * d->v_stride[0] + kvh * d->v_stride[1] : NULL;
    float *r_column = scratch + dim * transposed_stride(s_len) + 2 * s_len;

    for (int64_t g = 0; g < d->group; g++) {
        int64_t h = kvh * d->group + g;
        int64_t pair = b * d->q_heads + h;
        const float *p = probs + pair * t_len * s_len;
        const uint8_t *m = kept != NULL ? kept + pair * t_len * s_len : NULL;
        const float *ds = dscores != NULL ? dscores + pair * t_len * s_len : NULL;
        const float *doh = dout + pair * t_len * dim;
        const float *qh = q + b * d->q_stride[0] + h * d->q_stride[1];
        for (int64_t j = 0; j < s_len; j++) {
            /* Queries before the first that sees key j have p_ij = 0. */
            int64_t first = first_query(d, j);
            int64_t rows = t_len - first;
            if (dkh != NULL) {
                add_row_combination(dkh + j * d->k_stride[2], ds + first * s_len + j, s_len,
                                    qh + first * d->q_stride[2], d->q_stride[2], rows, dim,
                                    d->scale);
            }
            if (dvh == NULL) {
                continue;
            }
            const float *r = p + first * s_len + j;
            int64_t r_stride = s_len;
            if (m != NULL) {
                for (int64_t i = first; i < t_len; i++) {
                    r_column[i - first] =
                        m[i * s_len + j] ? p[i * s_len + j] * keep_scale : 0.0f;
                }
                r = r_column;
                r_stride = 1;
            }
            add_row_combination(dvh + j * d->v_stride[2], r, r_stride, doh + first * dim, dim,
                                rows, dim, 1.0f);
        }
    }
}

static void attention_backward(mr_ctx *ctx, mr_tensor *out) {
    mr_tensor *q = out->src[0], *k = out->src[1], *v = out->src[2];
    const attention_saved *s = out->saved;
    const attention_dims *d = &s->dims;

    float *dq = mr_tensor_requires_grad(q) ? mr_tensor_grad_buffer(ctx, q) : NULL;
    float *dk = mr_tensor_requires_grad(k) ? mr_tensor_grad_buffer(ctx, k) : NULL;
    float *dv = mr_tensor_requires_grad(v) ? mr_tensor_grad_buffer(ctx, v) : NULL;
    if (ctx->status != MR_OK) {
        return;
    }

    /* Score gradients for dk, plus one row of dp per thread. */
    int64_t pairs = d->batch * d->q_heads;
    int64_t pair_size = d->t_len * d->s_len;
    float *dscores = NULL;
    if (dk != NULL) {
        dscores = mr_ctx_alloc(ctx, (size_t)(pairs * pair_size > 0 ? pairs * pair_size : 1) *
                                        sizeof(float));
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int64_t scratch_size = scratch_floats(d);
    float *scratch_all = mr_ctx_alloc(ctx, (size_t)threads * (size_t)scratch_size * sizeof(float));
    if (ctx->status != MR_OK) {
        return;
    }

    if (dq != NULL || dk != NULL) {
#pragma omp parallel
        {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            float *scratch = scratch_all + (int64_t)thread * scratch_size;
#pragma omp for schedule(static)
            for (int64_t pair = 0; pair < pairs; pair++) {
                int64_t b = pair / d->q_heads, h = pair % d->q_heads;
                attention_backward_scores(
                    d, s->dropout.keep_scale, b, h, s->probs + pair * pair_size,
                    s->kept != NULL ? s->kept + pair * pair_size : NULL,
                    out->grad + pair * d->t_len * d->head_dim, k->data, v->data,
                    dscores != NULL ? dscores + pair * pair_size : NULL, dq, scratch);
            }
        }
    }

    if (dk != NULL || dv != NULL) {
        int64_t kv_pairs = d->batch * d->kv_heads;
#pragma omp parallel
        {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            float *scratch = scratch_all + (int64_t)thread * scratch_size;
#pragma omp for schedule(static)
            for (int64_t pair = 0; pair < kv_pairs; pair++) {
                int64_t b = pair / d->kv_heads, kvh = pair % d->kv_heads;
                attention_backward_kv(d, s->dropout.keep_scale, b, kvh, s->probs, s->kept,
                                      dscores, out->grad, q->data, dk, dv, scratch);
            }
        }
    }
}

/* Returns t, or a contiguous copy when its last dimension is strided. */
static mr_tensor *rows_contiguous(mr_ctx *ctx, mr_tensor *t) {
    if (t->stride[3] == 1 || t->shape[3] <= 1) {
        return t;
    }
    return mr_tensor_contiguous(ctx, t);
}

/* Checks the shapes and arguments of attention. Stores an error and
 * returns false when they do not fit. */
static bool attention_check(mr_ctx *ctx, const mr_tensor *q, const mr_tensor *k,
                            const mr_tensor *v, const mr_tensor *key_mask, float scale,
                            int flags, float dropout) {
    const char *op = "attention";
    if (!mr_check_dtype(ctx, op, "q", q, MR_F32) || !mr_check_dtype(ctx, op, "k", k, MR_F32) ||
        !mr_check_dtype(ctx, op, "v", v, MR_F32) ||
        (key_mask != NULL && !mr_check_dtype(ctx, op, "key_mask", key_mask, MR_F32))) {
        return false;
    }
    char sq[96], sk[96], sv[96], sm[96];
    mr_tensor_shape_string(q, sq, sizeof sq);
    mr_tensor_shape_string(k, sk, sizeof sk);
    mr_tensor_shape_string(v, sv, sizeof sv);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "attention: q, k and v must be 4-D [B, H, T, D], got %s, %s and %s", sq, sk,
                    sv);
        return false;
    }
    if (!mr_tensor_same_shape(k, v)) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "attention: k %s and v %s must have the same shape", sk,
                    sv);
        return false;
    }
    if (q->shape[0] != k->shape[0] || q->shape[3] != k->shape[3]) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "attention: q %s and k %s must agree in batch size and head size", sq, sk);
        return false;
    }
    if (k->shape[1] == 0 || q->shape[1] % k->shape[1] != 0) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "attention: query heads (%lld) must be a multiple of key/value heads (%lld)",
                    (long long)q->shape[1], (long long)k->shape[1]);
        return false;
    }
    if (key_mask != NULL && (key_mask->ndim != 2 || key_mask->shape[0] != k->shape[0] ||
                             key_mask->shape[1] != k->shape[2])) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "attention: key_mask must be [B, S] = [%lld, %lld], got %s",
                    (long long)k->shape[0], (long long)k->shape[2],
                    mr_tensor_shape_string(key_mask, sm, sizeof sm));
        return false;
    }
    if (!isfinite(scale)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "attention: scale must be finite, got %g",
                    (double)scale);
        return false;
    }
    int known_flags = MR_SOFTMAX_CAUSAL | MR_ATTENTION_ALL_KEYS_IF_EMPTY;
    if ((flags & ~known_flags) != 0) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT, "attention: unknown flags 0x%x",
                    (unsigned)(flags & ~known_flags));
        return false;
    }
    if (!(dropout >= 0.0f && dropout < 1.0f)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "attention: dropout = %g is outside [0, 1); pass a drop rate such as 0.1",
                    (double)dropout);
        return false;
    }
    return true;
}

mr_tensor *mr_tensor_attention(mr_ctx *ctx, mr_tensor *q, mr_tensor *k,
                               mr_tensor *v, mr_tensor *key_mask, float scale,
                               int flags) {
    return mr_tensor_attention_ex(ctx, q, k, v, key_mask, scale, flags, 0.0f, NULL);
}

mr_tensor *mr_tensor_attention_ex(mr_ctx *ctx, mr_tensor *q, mr_tensor *k,
                                  mr_tensor *v, mr_tensor *key_mask, float scale,
                                  int flags, float dropout, mr_rng *rng) {
    if (mr_any_null(3, q, k, v) ||
        !attention_check(ctx, q, k, v, key_mask, scale, flags, dropout)) {
        return NULL;
    }
    bool dropping = mr_ctx_training(ctx) && dropout > 0.0f;
    if (dropping && rng == NULL) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "attention: rng is NULL; training mode with dropout = %g needs a random "
                    "stream",
                    (double)dropout);
        return NULL;
    }
    bool has_mask = key_mask != NULL;
    q = rows_contiguous(ctx, q);
    k = rows_contiguous(ctx, k);
    v = rows_contiguous(ctx, v);
    key_mask = has_mask ? mr_tensor_contiguous(ctx, key_mask) : NULL;
    if (mr_any_null(3, q, k, v) || (has_mask && key_mask == NULL)) {
        return NULL;
    }

    attention_dims d;
    d.batch = q->shape[0];
    d.q_heads = q->shape[1];
    d.kv_heads = k->shape[1];
    d.group = d.q_heads / d.kv_heads;
    d.t_len = q->shape[2];
    d.s_len = k->shape[2];
    d.head_dim = q->shape[3];
    for (int i = 0; i < 3; i++) {
        d.q_stride[i] = q->stride[i];
        d.k_stride[i] = k->stride[i];
        d.v_stride[i] = v->stride[i];
    }
    if (scale <= 0.0f) {
        scale = d.head_dim > 0 ? 1.0f / sqrtf((float)d.head_dim) : 1.0f;
    }
    d.scale = scale;
    d.causal = (flags & MR_SOFTMAX_CAUSAL) != 0;
    d.all_keys_if_empty = (flags & MR_ATTENTION_ALL_KEYS_IF_EMPTY) != 0;

    mr_tensor *srcs[3] = {q, k, v};
    mr_tensor *out = mr_op_output(ctx, "attention", 4, q->shape, srcs, 3, attention_backward);
    if (out == NULL) {
        return NULL;
    }
    out->iparams[0] = flags;
    out->fparams[0] = scale;

    /* A fresh mask key per call, drawn as mr_tensor_dropout draws it. */
    attention_dropout drop = {0.0f, 1.0f, 0};
    if (dropping) {
        drop.rate = dropout;
        drop.keep_scale = 1.0f / (1.0f - dropout);
        drop.mask_key = mr_rng_next_u64(rng);
    }
    out->fparams[1] = drop.rate;

    /* Recording keeps every probability. Otherwise each thread reuses one row. */
    int64_t pairs = d.batch * d.q_heads;
    int64_t pair_size = d.t_len * d.s_len;
    bool recording = mr_op_recording(out);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int64_t prob_count = recording ? pairs * pair_size : (int64_t)threads * d.s_len;
    float *probs = mr_ctx_alloc(ctx, (size_t)(prob_count > 0 ? prob_count : 1) * sizeof(float));
    int64_t scratch_size = scratch_floats(&d);
    float *scratch_all = mr_ctx_alloc(ctx, (size_t)threads * (size_t)scratch_size * sizeof(float));
    if (probs == NULL || scratch_all == NULL) {
        return NULL;
    }
    uint8_t *kept = NULL;
    if (recording && dropping) {
        kept = mr_ctx_alloc(ctx, (size_t)(pairs * pair_size > 0 ? pairs * pair_size : 1));
        if (kept == NULL) {
            return NULL;
        }
    }
    if (recording) {
        attention_saved *s = mr_ctx_alloc(ctx, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        s->dims = d;
        s->dropout = drop;
        s->probs = probs;
        s->kept = kept;
        out->saved = s;
    }

    const float *mask_data = key_mask != NULL ? key_mask->data : NULL;
#pragma omp parallel
    {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
#pragma omp for schedule(static)
        for (int64_t pair = 0; pair < pairs; pair++) {
            int64_t b = pair / d.q_heads, h = pair % d.q_heads;
            float *p = recording ? probs + pair * pair_size : probs + (int64_t)thread * d.s_len;
            attention_forward_pair(&d, &drop, b, h, q->data, k->data, v->data, mask_data, p,
                                   recording, kept != NULL ? kept + pair * pair_size : NULL,
                                   out->data + pair * d.t_len * d.head_dim,
                                   scratch_all + (int64_t)thread * scratch_size);
        }
    }
    return out;
}
