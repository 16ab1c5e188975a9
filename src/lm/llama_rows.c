/*
 * Row kernels shared by the two inference paths: mr_llama_eval() with its
 * KV cache (llama_infer.c) and mr_llama_embed() on packed texts
 * (llama_embed.c). Each path has its own attention, and the rest of a
 * block runs here for both.
 *
 * The arithmetic mirrors the training path (llama_train.c): RMSNorm sums
 * in double, and rotary angles are computed in double as the engine's rope
 * does. Summation orders differ from the engine's, so the paths agree with
 * training to rounding, not bit for bit.
 *
 * The row loops of RMSNorm, rope and the additions run in parallel only
 * for several rows. A single row, such as a decoded token, calls no OpenMP
 * at all, because even a parallel region that an `if` clause keeps on one
 * thread costs time on every call.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/blas.h"
#include "llama_internal.h"

bool llama_activations_alloc(llama_activations *a, const mr_llama *model, int64_t rows) {
    const mr_llama_config *c = &model->config;
    size_t r = (size_t)rows;
    memset(a, 0, sizeof *a);

    a->x = malloc(r * (size_t)c->dim * sizeof(float));
    a->h = malloc(r * (size_t)c->dim * sizeof(float));
    a->q = malloc(r * (size_t)llama_q_width(c) * sizeof(float));
    a->k = malloc(r * (size_t)llama_kv_width(c) * sizeof(float));
    a->v = malloc(r * (size_t)llama_kv_width(c) * sizeof(float));
    a->att = malloc(r * (size_t)llama_q_width(c) * sizeof(float));
    a->gate = malloc(r * (size_t)c->ffn_dim * sizeof(float));
    a->up = malloc(r * (size_t)c->ffn_dim * sizeof(float));
    a->proj = malloc(r * (size_t)c->dim * sizeof(float));
    a->cos_sin = malloc(r * (size_t)c->head_dim * sizeof(float));
    a->decoded = malloc((size_t)LLAMA_DECODE_ROWS * llama_widest_row(model) * sizeof(float));
    a->int8_x = malloc(mr_qmatvec_int8_scratch_bytes((int64_t)llama_widest_row(model)));
    if (a->x == NULL || a->h == NULL || a->q == NULL || a->k == NULL || a->v == NULL ||
        a->att == NULL || a->gate == NULL || a->up == NULL || a->proj == NULL ||
        a->cos_sin == NULL || a->decoded == NULL || a->int8_x == NULL) {
        llama_activations_free(a);
        return false;
    }
    return true;
}

void llama_activations_free(llama_activations *a) {
    free(a->x);
    free(a->h);
    free(a->q);
    free(a->k);
    free(a->v);
    free(a->att);
    free(a->gate);
    free(a->up);
    free(a->proj);
    free(a->cos_sin);
    free(a->decoded);
    free(a->int8_x);
    memset(a, 0, sizeof *a);
}

/* Adds add [n] to x [n] in place. */
static void add_row(float *x, const float *add, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] += add[i];
    }
}

/*
 * Adds add to every row of x [rows, width] in place. add has rows of its
 * own when add_stride is width, or is one row for all when add_stride is 0.
 */
static void add_rows(float *x, const float *add, int64_t add_stride, int64_t rows,
                     int64_t width) {
    if (rows == 1) {
        add_row(x, add, width);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        add_row(x + r * width, add + r * add_stride, width);
    }
}

void llama_weight_product(llama_activations *a, const mr_llama_weight *w,
                          const mr_llama_weight *bias, const float *x, int64_t rows, float *y) {
    int64_t in = w->ne[0], out = w->ne[1];
    if (rows == 1 && a->single_row_matvec && a->int8_matvec) {
        mr_qmatvec_int8(w->type, w->data, out, in, x, y, a->int8_x);
    } else if (rows == 1 && a->single_row_matvec) {
        mr_qmatvec(w->type, w->data, out, in, x, y);
    } else if (w->type == MR_QTYPE_F32) {
        mr_sgemm(false, true, rows, out, in, 1.0f, x, in, w->data, in, 0.0f, y, out);
    } else {
        for (int64_t first = 0; first < out; first += LLAMA_DECODE_ROWS) {
            int64_t count = out - first < LLAMA_DECODE_ROWS ? out - first : LLAMA_DECODE_ROWS;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < count; r++) {
                llama_weight_row(w, first + r, a->decoded + r * in);
            }
            mr_sgemm(false, true, rows, count, in, 1.0f, x, in, a->decoded, in, 0.0f, y + first,
                     out);
        }
    }

    if (bias != NULL) {
        add_rows(y, bias->data, 0, rows, out);
    }
}

/* Computes y = x / sqrt(mean(x^2) + eps) * weight for one row of width n. */
static void rms_norm_row(const float *x, const float *weight, float eps, int64_t n, float *y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)x[i] * x[i];
    }
    float inv = (float)(1.0 / sqrt(sum / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) {
        y[i] = x[i] * inv * weight[i];
    }
}

void llama_rms_norm_rows(const float *src, const float *weight, float eps, int64_t rows,
                         int64_t n, float *dst) {
    if (rows == 1) {
        rms_norm_row(src, weight, eps, n, dst);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        rms_norm_row(src + r * n, weight, eps, n, dst + r * n);
    }
}

void llama_rope_angles(const mr_llama_config *c, int64_t position, float *cos_sin) {
    int64_t half = c->head_dim / 2;
    double pos = (double)position;
    for (int64_t i = 0; i < half; i++) {
        double angle = pos * pow((double)c->rope_base, -2.0 * (double)i / (double)c->head_dim);
        cos_sin[i] = (float)cos(angle);
        cos_sin[half + i] = (float)sin(angle);
    }
}

/* Rotates each of the heads of one row [heads D] by the angles in
 * cos_sin [D]. */
static void rope_row(const mr_llama_config *c, const float *cos_sin, int heads, float *x) {
    int64_t dim = c->head_dim, half = dim / 2;
    bool adjacent = c->rope_layout == MR_ROPE_ADJACENT;
    for (int h = 0; h < heads; h++) {
        float *head = x + (int64_t)h * dim;
        for (int64_t i = 0; i < half; i++) {
            int64_t ia = adjacent ? 2 * i : i;
            int64_t ib = adjacent ? 2 * i + 1 : i + half;
            float a = head[ia], b = head[ib];
            head[ia] = a * cos_sin[i] - b * cos_sin[half + i];
            head[ib] = a * cos_sin[half + i] + b * cos_sin[i];
        }
    }
}

/* Rotates every row of x [rows, heads D] by its angles in cos_sin
 * [rows, D]. */
static void rope_rows(const mr_llama_config *c, const float *cos_sin, int64_t rows, int heads,
                      float *x) {
    int64_t dim = c->head_dim;
    if (rows == 1) {
        rope_row(c, cos_sin, heads, x);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        rope_row(c, cos_sin + r * dim, heads, x + r * heads * dim);
    }
}

void llama_block_qkv(const mr_llama *model, llama_activations *a, int layer,
                     int64_t rows) {
    const mr_llama_config *c = &model->config;
    llama_rms_norm_rows(a->x, llama_block_weight(model, layer, LLAMA_ATTN_NORM)->data,
                        c->rms_eps, rows, c->dim, a->h);
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_ATTN_Q),
                         llama_block_weight(model, layer, LLAMA_ATTN_Q_BIAS), a->h, rows, a->q);
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_ATTN_K),
                         llama_block_weight(model, layer, LLAMA_ATTN_K_BIAS), a->h, rows, a->k);
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_ATTN_V),
                         llama_block_weight(model, layer, LLAMA_ATTN_V_BIAS), a->h, rows, a->v);
    rope_rows(c, a->cos_sin, rows, c->heads, a->q);
    rope_rows(c, a->cos_sin, rows, c->kv_heads, a->k);
}

void llama_block_finish(const mr_llama *model, llama_activations *a, int layer,
                        int64_t rows) {
    const mr_llama_config *c = &model->config;
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_ATTN_OUTPUT), NULL, a->att,
                         rows, a->proj);
    add_rows(a->x, a->proj, c->dim, rows, c->dim);

    /* SwiGLU feed-forward. */
    llama_rms_norm_rows(a->x, llama_block_weight(model, layer, LLAMA_FFN_NORM)->data,
                        c->rms_eps, rows, c->dim, a->h);
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_FFN_GATE), NULL, a->h, rows,
                         a->gate);
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_FFN_UP), NULL, a->h, rows,
                         a->up);
    int64_t hidden = rows * c->ffn_dim;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < hidden; i++) {
        float g = a->gate[i];
        a->gate[i] = g / (1.0f + expf(-g)) * a->up[i];
    }
    llama_weight_product(a, llama_block_weight(model, layer, LLAMA_FFN_DOWN), NULL, a->gate,
                         rows, a->proj);
    add_rows(a->x, a->proj, c->dim, rows, c->dim);
}
