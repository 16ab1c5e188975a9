/*
 * One-layer GRU with backward through time.
 *
 * Forward: the input projections of all B*T steps come from one matrix
 * product. The recurrence then runs step by step with one [B, H] x [H, 3H]
 * product per step. Each step saves the gates r, z, n and the hidden
 * projection of the new gate (W_hn h + b_hn) for the backward pass.
 *
 * Backward walks the steps in reverse, collecting the gradients of the
 * input and hidden pre-activations of every step, and then turns them
 * into weight, bias and input gradients with a few large products.
 *
 * The batch rows of the recurrence are independent, so each thread runs
 * every step for its own block of rows, with single-threaded products.
 * The threads meet once per call instead of twice per step, which
 * matters for the short, narrow inputs of recommendation models, where
 * one step's work is a few microseconds.
 */
#include <math.h>
#include <string.h>

#include "blas.h"
#include "ctx.h"
#include "fastmath.h"
#include "internal.h"

typedef struct gru_saved {
    mr_tensor *x, *h0, *w_ih, *w_hh, *b_ih, *b_hh; /* h0 and biases may be NULL */
    int64_t batch, steps, inputs, hidden;
    /* Per step, laid out [B, T, H] like the output. */
    float *reset, *update, *candidate, *hidden_new;
} gru_saved;

/*
 * Hidden state before step t for batch row b: h0 (or zeros) at t = 0,
 * otherwise the output of step t - 1. Returns NULL for the zero state.
 */
static const float *previous_hidden(const gru_saved *s, const float *out, int64_t b,
                                    int64_t t) {
    int64_t hidden = s->hidden;
    if (t > 0) {
        return out + (b * s->steps + t - 1) * hidden;
    }
    return s->h0 != NULL ? s->h0->data + b * hidden : NULL;
}

/* A loop body over blocks of batch rows, cut into `blocks` even parts. */
typedef struct row_blocks {
    int64_t rows, blocks;
    void (*body)(int64_t first, int64_t count, void *arg);
    void *arg;
} row_blocks;

static void run_row_block(int64_t i, void *arg) {
    const row_blocks *r = arg;
    int64_t first = r->rows * i / r->blocks, last = r->rows * (i + 1) / r->blocks;
    r->body(first, last - first, r->arg);
}

/*
 * Runs body(first, count, arg) over the rows [0, rows) in one block per
 * thread, each on its own thread with single-threaded BLAS. With one
 * thread or one row, a single block runs on the calling thread.
 */
static void for_row_blocks(int64_t rows, void (*body)(int64_t, int64_t, void *), void *arg) {
    int64_t threads = mr_threads_get();
    row_blocks r = {rows, rows < threads ? rows : threads, body, arg};
    mr_sgemm_each(r.blocks, r.blocks >= 2, run_row_block, &r);
}

/* Inputs and outputs of the backward recurrence for one block of rows. */
typedef struct gru_backward_work {
    const gru_saved *s;
    const float *out, *grad, *zeros;
    float *d_gi, *d_gh, *dh, *dh_carry;
} gru_backward_work;

/* Runs the backward recurrence through every step, last to first, for
 * batch rows [first, first + count). */
static void gru_backward_rows(int64_t first, int64_t count, void *arg) {
    const gru_backward_work *w = arg;
    const gru_saved *s = w->s;
    int64_t steps = s->steps, hidden = s->hidden, gates = 3 * hidden;

    for (int64_t t = steps - 1; t >= 0; t--) {
        for (int64_t b = first; b < first + count; b++) {
            const float *h_prev = previous_hidden(s, w->out, b, t);
            h_prev = h_prev != NULL ? h_prev : w->zeros;
            int64_t row = b * steps + t;
            const float *r = s->reset + row * hidden, *z = s->update + row * hidden;
            const float *n = s->candidate + row * hidden, *hn = s->hidden_new + row * hidden;
            const float *g_out = w->grad + row * hidden;
            float *gi = w->d_gi + row * gates, *gh = w->d_gh + row * gates;
            float *dh_b = w->dh + b * hidden, *carry = w->dh_carry + b * hidden;
#pragma omp simd
            for (int64_t j = 0; j < hidden; j++) {
                float g = g_out[j] + carry[j];
                float dn_pre = g * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
                float dz_pre = g * (h_prev[j] - n[j]) * z[j] * (1.0f - z[j]);
                float dr_pre = dn_pre * hn[j] * r[j] * (1.0f - r[j]);
                gi[j] = dr_pre;
                gi[hidden + j] = dz_pre;
                gi[2 * hidden + j] = dn_pre;
                gh[j] = dr_pre;
                gh[hidden + j] = dz_pre;
                gh[2 * hidden + j] = dn_pre * r[j];
                dh_b[j] = g * z[j];
            }
        }

        /* dh_{t-1} = g * z + d_gh_t @ W_hh. */
        float *carry = w->dh_carry + first * hidden;
        mr_sgemm(false, false, count, hidden, gates, 1.0f, w->d_gh + (first * steps + t) * gates,
                 steps * gates, s->w_hh->data, hidden, 0.0f, carry, hidden);
        const float *dh = w->dh + first * hidden;
        for (int64_t i = 0; i < count * hidden; i++) {
            carry[i] += dh[i];
        }
    }
}

static void gru_backward(mr_ctx *ctx, mr_tensor *out) {
    const gru_saved *s = out->saved;
    int64_t batch = s->batch, steps = s->steps, hidden = s->hidden, inputs = s->inputs;
    int64_t rows = batch * steps, gates = 3 * hidden;

    /* Gradients of the pre-activations, [B, T, 3H] each: d_gi for the input
     * projection (x W_ih^T + b_ih) and d_gh for the hidden projection. */
    float *d_gi = mr_ctx_alloc(ctx, (size_t)(rows * gates + 1) * sizeof(float));
    float *d_gh = mr_ctx_alloc(ctx, (size_t)(rows * gates + 1) * sizeof(float));
    float *dh = mr_ctx_alloc(ctx, (size_t)(batch * hidden + 1) * sizeof(float));
    float *dh_carry = mr_ctx_alloc(ctx, (size_t)(batch * hidden + 1) * sizeof(float));
    float *h_prev_all = mr_ctx_alloc(ctx, (size_t)(rows * hidden + 1) * sizeof(float));
    float *zeros = mr_ctx_alloc(ctx, (size_t)hidden * sizeof(float));
    if (d_gi == NULL || d_gh == NULL || dh == NULL || dh_carry == NULL || h_prev_all == NULL ||
        zeros == NULL) {
        return;
    }
    memset(dh_carry, 0, (size_t)(batch * hidden) * sizeof(float));
    memset(zeros, 0, (size_t)hidden * sizeof(float));

    /* The recurrence, last step first, per block of batch rows. */
    gru_backward_work work = {s, out->data, out->grad, zeros, d_gi, d_gh, dh, dh_carry};
    for_row_blocks(batch, gru_backward_rows, &work);

    if (s->h0 != NULL && mr_tensor_requires_grad(s->h0)) {
        float *dh0 = mr_tensor_grad_buffer(ctx, s->h0);
        if (dh0 == NULL) {
            return;
        }
        for (int64_t i = 0; i < batch * hidden; i++) {
            dh0[i] += dh_carry[i];
        }
    }
    if (mr_tensor_requires_grad(s->x)) {
        float *dx = mr_tensor_grad_buffer(ctx, s->x);
        if (dx == NULL) {
            return;
        }
        mr_sgemm(false, false, rows, inputs, gates, 1.0f, d_gi, gates, s->w_ih->data, inputs,
                 1.0f, dx, inputs);
    }
    if (mr_tensor_requires_grad(s->w_ih)) {
        float *dw = mr_tensor_grad_buffer(ctx, s->w_ih);
        if (dw == NULL) {
            return;
        }
        mr_sgemm(true, false, gates, inputs, rows, 1.0f, d_gi, gates, s->x->data, inputs, 1.0f,
                 dw, inputs);
    }
    if (mr_tensor_requires_grad(s->w_hh)) {
        float *dw = mr_tensor_grad_buffer(ctx, s->w_hh);
        if (dw == NULL) {
            return;
        }
        /* Row (b, t) of h_prev_all is the state that step t read. */
        for (int64_t b = 0; b < batch; b++) {
            for (int64_t t = 0; t < steps; t++) {
                const float *h_prev = previous_hidden(s, out->data, b, t);
                float *dst = h_prev_all + (b * steps + t) * hidden;
                if (h_prev != NULL) {
                    memcpy(dst, h_prev, (size_t)hidden * sizeof(float));
                } else {
                    memset(dst, 0, (size_t)hidden * sizeof(float));
                }
            }
        }
        mr_sgemm(true, false, gates, hidden, rows, 1.0f, d_gh, gates, h_prev_all, hidden,
                 1.0f, dw, hidden);
    }

    /* Bias gradients sum the pre-activation gradients over rows in order. */
    mr_tensor *biases[2] = {s->b_ih, s->b_hh};
    const float *sources[2] = {d_gi, d_gh};
    for (int which = 0; which < 2; which++) {
        if (biases[which] == NULL || !mr_tensor_requires_grad(biases[which])) {
            continue;
        }
        float *db = mr_tensor_grad_buffer(ctx, biases[which]);
        if (db == NULL) {
            return;
        }
        mr_add_column_sums(sources[which], rows, gates, db);
    }
}

/* Inputs and outputs of the forward recurrence for one block of rows. */
typedef struct gru_forward_work {
    const gru_saved *s;
    const float *bias_i, *bias_h, *zeros, *gi;
    float *gh, *scratch, *out;
    bool recording;
} gru_forward_work;

/*
 * Runs every step for batch rows [first, first + count): the hidden
 * projection gh = h_{t-1} W_hh^T of those rows, then their gates. Rows b
 * of the previous step's outputs are T*H apart. Without recording, each
 * row's gates go to a scratch row instead, so the gate loop always stores
 * and has no branch.
 */
static void gru_forward_rows(int64_t first, int64_t count, void *arg) {
    const gru_forward_work *w = arg;
    const gru_saved *s = w->s;
    int64_t steps = s->steps, hidden = s->hidden, gates = 3 * hidden;
    const float *bias_i = w->bias_i, *bias_h = w->bias_h;
    float *gh = w->gh + first * gates;

    for (int64_t t = 0; t < steps; t++) {
        if (t > 0) {
            mr_sgemm(false, true, count, gates, hidden, 1.0f,
                     w->out + (first * steps + t - 1) * hidden, steps * hidden,
                     s->w_hh->data, hidden, 0.0f, gh, gates);
        } else if (s->h0 != NULL) {
            mr_sgemm(false, true, count, gates, hidden, 1.0f, s->h0->data + first * hidden,
                     hidden, s->w_hh->data, hidden, 0.0f, gh, gates);
        } else {
            memset(gh, 0, (size_t)(count * gates) * sizeof(float));
        }

        for (int64_t b = first; b < first + count; b++) {
            const float *h_prev = previous_hidden(s, w->out, b, t);
            h_prev = h_prev != NULL ? h_prev : w->zeros;
            int64_t row = b * steps + t;
            const float *gi_row = w->gi + row * gates, *gh_row = w->gh + b * gates;
            float *h = w->out + row * hidden;
            float *reset = w->recording ? s->reset + row * hidden : w->scratch + b * 4 * hidden;
            float *update = w->recording ? s->update + row * hidden : reset + hidden;
            float *candidate = w->recording ? s->candidate + row * hidden : reset + 2 * hidden;
            float *hidden_new = w->recording ? s->hidden_new + row * hidden : reset + 3 * hidden;

#pragma omp simd
            for (int64_t j = 0; j < hidden; j++) {
                float r = mr_sigmoidf(gi_row[j] + bias_i[j] + gh_row[j] + bias_h[j]);
                float z = mr_sigmoidf(gi_row[hidden + j] + bias_i[hidden + j] +
                                      gh_row[hidden + j] + bias_h[hidden + j]);
                float hn = gh_row[2 * hidden + j] + bias_h[2 * hidden + j];
                float n = mr_tanhf(gi_row[2 * hidden + j] + bias_i[2 * hidden + j] + r * hn);
                h[j] = (1.0f - z) * n + z * h_prev[j];
                reset[j] = r;
                update[j] = z;
                candidate[j] = n;
                hidden_new[j] = hn;
            }
        }
    }
}

/* Stores a shape error for GRU argument `arg` and returns false unless t is
 * 2-D [rows, cols] (or 1-D [rows] when cols < 0). */
static bool check_gru_shape(mr_ctx *ctx, const char *arg, const mr_tensor *t, int64_t rows,
                            int64_t cols) {
    bool ok = cols < 0 ? (t->ndim == 1 && t->shape[0] == rows)
                       : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[96];
        if (cols < 0) {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "gru: %s has shape %s, expected [%lld]", arg,
                        mr_tensor_shape_string(t, got, sizeof got), (long long)rows);
        } else {
            mr_ctx_fail(ctx, MR_ERR_SHAPE, "gru: %s has shape %s, expected [%lld, %lld]", arg,
                        mr_tensor_shape_string(t, got, sizeof got), (long long)rows,
                        (long long)cols);
        }
    }
    return ok;
}

mr_tensor *mr_tensor_gru(mr_ctx *ctx, mr_tensor *x, mr_tensor *h0,
                         mr_tensor *w_ih, mr_tensor *w_hh, mr_tensor *b_ih,
                         mr_tensor *b_hh) {
    if (mr_any_null(3, x, w_ih, w_hh)) {
        return NULL;
    }
    mr_tensor *all[6] = {x, h0, w_ih, w_hh, b_ih, b_hh};
    const char *names[6] = {"x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"};
    for (int i = 0; i < 6; i++) {
        if (all[i] != NULL && !mr_check_dtype(ctx, "gru", names[i], all[i], MR_F32)) {
            return NULL;
        }
    }
    char sx[96], sw[96];
    if (x->ndim != 3) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "gru: x has shape %s, expected [B, T, I]",
                    mr_tensor_shape_string(x, sx, sizeof sx));
        return NULL;
    }
    if (w_ih->ndim != 2 || w_ih->shape[0] % 3 != 0) {
        mr_ctx_fail(ctx, MR_ERR_SHAPE, "gru: w_ih has shape %s, expected [3H, I]",
                    mr_tensor_shape_string(w_ih, sw, sizeof sw));
        return NULL;
    }
    int64_t batch = x->shape[0], steps = x->shape[1], inputs = x->shape[2];
    int64_t hidden = w_ih->shape[0] / 3, gates = 3 * hidden;
    if (!check_gru_shape(ctx, "w_ih", w_ih, gates, inputs) ||
        !check_gru_shape(ctx, "w_hh", w_hh, gates, hidden) ||
        (h0 != NULL && !check_gru_shape(ctx, "h0", h0, batch, hidden)) ||
        (b_ih != NULL && !check_gru_shape(ctx, "b_ih", b_ih, gates, -1)) ||
        (b_hh != NULL && !check_gru_shape(ctx, "b_hh", b_hh, gates, -1))) {
        return NULL;
    }

    for (int i = 0; i < 6; i++) {
        if (all[i] != NULL) {
            all[i] = mr_tensor_contiguous(ctx, all[i]);
            if (all[i] == NULL) {
                return NULL;
            }
        }
    }
    x = all[0], h0 = all[1], w_ih = all[2], w_hh = all[3], b_ih = all[4], b_hh = all[5];

    /* mr_op_output only needs the inputs that exist; backward finds each one
     * by role in the saved record. */
    mr_tensor *srcs[6];
    int nsrc = 0;
    for (int i = 0; i < 6; i++) {
        if (all[i] != NULL) {
            srcs[nsrc++] = all[i];
        }
    }
    int64_t shape[3] = {batch, steps, hidden};
    mr_tensor *out = mr_op_output(ctx, "gru", 3, shape, srcs, nsrc, gru_backward);
    if (out == NULL) {
        return NULL;
    }
    bool recording = mr_op_recording(out);
    int64_t rows = batch * steps;

    /* Scratch: input projections for all steps, one step's hidden
     * projection, and (when recording) the saved gates. */
    size_t state_bytes = (size_t)(rows * hidden + 1) * sizeof(float);
    float *gi = mr_ctx_alloc(ctx, (size_t)(rows * gates + 1) * sizeof(float));
    float *gh = mr_ctx_alloc(ctx, (size_t)(batch * gates + 1) * sizeof(float));
    gru_saved *s = mr_ctx_alloc(ctx, sizeof *s);
    float *zeros = mr_ctx_alloc(ctx, (size_t)gates * sizeof(float));
    if (gi == NULL || gh == NULL || s == NULL || zeros == NULL) {
        return NULL;
    }
    memset(zeros, 0, (size_t)gates * sizeof(float));
    *s = (gru_saved){x, h0, w_ih, w_hh, b_ih, b_hh, batch, steps, inputs, hidden,
                     NULL, NULL, NULL, NULL};
    if (recording) {
        s->reset = mr_ctx_alloc(ctx, state_bytes);
        s->update = mr_ctx_alloc(ctx, state_bytes);
        s->candidate = mr_ctx_alloc(ctx, state_bytes);
        s->hidden_new = mr_ctx_alloc(ctx, state_bytes);
        if (s->reset == NULL || s->update == NULL || s->candidate == NULL ||
            s->hidden_new == NULL) {
            return NULL;
        }
    }

    /* Scratch gates for the rows when not recording (see
     * gru_forward_rows). Zeros stand in for a missing bias and for the
     * zero initial state. */
    float *scratch = NULL;
    if (!recording) {
        scratch = mr_ctx_alloc(ctx, (size_t)(batch * 4 * hidden) * sizeof(float));
        if (scratch == NULL) {
            return NULL;
        }
    }
    const float *bias_i = b_ih != NULL ? b_ih->data : zeros;
    const float *bias_h = b_hh != NULL ? b_hh->data : zeros;

    /* gi = x W_ih^T for every (b, t) row at once. */
    mr_sgemm(false, true, rows, gates, inputs, 1.0f, x->data, inputs, w_ih->data, inputs, 0.0f,
             gi, gates);

    /* The recurrence, step by step, per block of batch rows. */
    gru_forward_work work = {s, bias_i, bias_h, zeros, gi, gh, scratch, out->data, recording};
    for_row_blocks(batch, gru_forward_rows, &work);

    if (recording) {
        out->saved = s;
    }
    return out;
}
