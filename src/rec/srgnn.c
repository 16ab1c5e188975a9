/*
 * The SR-GNN backbone as the Ada-Retrieval code (ll0ruc/Ada-Retrieval,
 * srgnn.py and GNN in modules.py) runs it. Each sequence becomes a graph
 * over its distinct ids (padding id 0 included) with an edge between
 * every pair of consecutive non-padding items. `layers` steps of a gated
 * graph cell update the node states:
 *
 *     a_in  = A_in  (H W_ein^T  + b_ein)  + b_iah
 *     a_out = A_out (H W_eout^T + b_eout) + b_ioh
 *     r = sigmoid(W_ir [a_in; a_out] + b_ir + W_hr H + b_hr)
 *     z = sigmoid(W_iz [a_in; a_out] + b_iz + W_hz H + b_hz)
 *     n = tanh(W_in [a_in; a_out] + b_in + r * (W_hn H + b_hn))
 *     H' = (1 - z) * H + z * n
 *
 * (note that z weights the new state, unlike in nn.GRU). Each position
 * then reads its node's state h_i; with h_last at the last position,
 *
 *     a = sum_i [id_i != 0] (w3 . sigmoid(W1 h_last + b1 + W2 h_i + b2)) h_i
 *     user = W_t [a; h_last] + b_t.
 *
 * Each node's embedding is read from item_emb at the first position of its
 * id. The reference embeds each distinct id once, so the two agree when
 * every position of an id carries the same embedding, as a table lookup
 * does with or without Ada-Retrieval's item adapter. The graph propagates
 * over node slots with per-sequence [L, L] adjacency matrices in a batched
 * matrix product, which stays exact when an id repeats in a sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "backbone.h"
#include "rnn_layers.h"

typedef struct srgnn_state {
    mr_paramset *ps;
    int dim;
    int steps;
    int w_ih, w_hh, b_ih, b_hh; /* [3D, 2D], [3D, D], [3D], [3D] */
    int b_iah, b_ioh;           /* [D] */
    mr_rec_rnn_linear edge_in, edge_out;   /* D -> D */
    mr_rec_rnn_linear linear_one;          /* W1: D -> D */
    mr_rec_rnn_linear linear_two;          /* W2: D -> D */
    mr_rec_rnn_linear linear_three;        /* w3: D -> 1, no bias */
    mr_rec_rnn_linear linear_transform;    /* W_t: 2D -> D */
} srgnn_state;

static void srgnn_free(void *state) { free(state); }

/* Declares the weights under the authors' names ("backbone.gnn.w_ih",
 * "backbone.gnn.linear_edge_in.weight", "backbone.linear_one.weight", ...). */
static void *srgnn_declare(const mr_rec_config *config, mr_paramset *ps, mr_error *err) {
    if (config->dim < 1 || config->layers < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "srgnn: dim %d and layers (graph steps) %d must be positive", config->dim,
                     config->layers);
        return NULL;
    }
    srgnn_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "srgnn: out of memory");
        return NULL;
    }
    s->ps = ps;
    s->dim = config->dim;
    s->steps = config->layers;

    int64_t dim = s->dim;
    int64_t ih_shape[2] = {3 * dim, 2 * dim};
    int64_t hh_shape[2] = {3 * dim, dim};
    int64_t gate_shape[1] = {3 * dim};
    int64_t vector_shape[1] = {dim};
    const char *names[6] = {"w_ih", "w_hh", "b_ih", "b_hh", "b_iah", "b_ioh"};
    const int64_t *shapes[6] = {ih_shape, hh_shape, gate_shape, gate_shape, vector_shape,
                                vector_shape};
    int ndims[6] = {2, 2, 1, 1, 1, 1};
    int *indices[6] = {&s->w_ih, &s->w_hh, &s->b_ih, &s->b_hh, &s->b_iah, &s->b_ioh};
    for (int k = 0; k < 6; k++) {
        *indices[k] = mr_rec_rnn_declare(ps, "backbone.gnn.", names[k], ndims[k], shapes[k], err);
        if (*indices[k] < 0) {
            srgnn_free(s);
            return NULL;
        }
    }

    bool ok = mr_rec_rnn_linear_declare(ps, "backbone.gnn.linear_edge_in", s->dim, s->dim,
                                        true, &s->edge_in, err) &&
              mr_rec_rnn_linear_declare(ps, "backbone.gnn.linear_edge_out", s->dim, s->dim,
                                        true, &s->edge_out, err) &&
              mr_rec_rnn_linear_declare(ps, "backbone.linear_one", s->dim, s->dim, true,
                                        &s->linear_one, err) &&
              mr_rec_rnn_linear_declare(ps, "backbone.linear_two", s->dim, s->dim, true,
                                        &s->linear_two, err) &&
              mr_rec_rnn_linear_declare(ps, "backbone.linear_three", s->dim, 1, false,
                                        &s->linear_three, err) &&
              mr_rec_rnn_linear_declare(ps, "backbone.linear_transform", 2 * s->dim, s->dim,
                                        true, &s->linear_transform, err);
    if (!ok) {
        srgnn_free(s);
        return NULL;
    }
    return s;
}

/*
 * The graph cell's own tensors (w_ih, w_hh, b_ih, b_hh, b_iah, b_ioh) keep
 * the reference's torch.randn values, normal(0, 1), because the authors'
 * xavier initialiser only visits Embedding, Linear and LayerNorm modules. Every linear layer gets xavier uniform with a
 * zero bias.
 */
static void srgnn_init(void *state, mr_paramset *ps, mr_rng *rng) {
    srgnn_state *s = state;
    int raw[6] = {s->w_ih, s->w_hh, s->b_ih, s->b_hh, s->b_iah, s->b_ioh};
    for (int k = 0; k < 6; k++) {
        mr_tensor_init_normal(mr_paramset_get(ps, raw[k]), 0.0f, 1.0f, rng);
    }
    const mr_rec_rnn_linear *linears[6] = {&s->edge_in,    &s->edge_out,
                                           &s->linear_one, &s->linear_two,
                                           &s->linear_three, &s->linear_transform};
    for (int k = 0; k < 6; k++) {
        mr_rec_rnn_linear_init_xavier(ps, linears[k], rng);
    }
}

/* Returns the index of id in the ascending array nodes[0..count-1]. */
static int find_node(const int32_t *nodes, int count, int32_t id) {
    int low = 0, high = count - 1;
    while (low < high) {
        int middle = low + (high - low) / 2;
        if (nodes[middle] < id) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

static int compare_ids(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Divides each of the first count rows of matrix [count, stride] by its
 * sum; rows that sum to zero stay zero. */
static void normalise_rows(float *matrix, int count, int stride) {
    for (int n = 0; n < count; n++) {
        float *row = matrix + (size_t)n * stride;
        float sum = 0.0f;
        for (int m = 0; m < count; m++) {
            sum += row[m];
        }
        if (sum > 0.0f) {
            for (int m = 0; m < count; m++) {
                row[m] /= sum;
            }
        }
    }
}

int mr_rec_srgnn_graph(const int32_t *seq, int length, int32_t *representative,
                       int32_t *alias, float *a_in, float *a_out) {
    /* Distinct ids in ascending order, as numpy.unique lists them. The
     * representative array holds the sorted ids until alias is known. */
    int32_t *nodes = representative;
    memcpy(nodes, seq, (size_t)length * sizeof *nodes);
    qsort(nodes, (size_t)length, sizeof *nodes, compare_ids);
    int count = 0;
    for (int p = 0; p < length; p++) {
        if (count == 0 || nodes[count - 1] != nodes[p]) {
            nodes[count++] = nodes[p];
        }
    }
    for (int p = 0; p < length; p++) {
        alias[p] = find_node(nodes, count, seq[p]);
    }

    /* First position of each node; unused slots read node 0's position. */
    for (int n = 0; n < length; n++) {
        representative[n] = -1;
    }
    for (int p = length - 1; p >= 0; p--) {
        representative[alias[p]] = p;
    }
    for (int n = count; n < length; n++) {
        representative[n] = representative[0];
    }

    /* a_out starts as the 0/1 edge matrix and a_in as its transpose; an
     * edge found twice is still 1. Row sums are then the out-degrees of
     * a_out and the in-degrees of a_in. */
    size_t cells = (size_t)length * (size_t)length;
    memset(a_in, 0, cells * sizeof *a_in);
    memset(a_out, 0, cells * sizeof *a_out);
    for (int p = 0; p + 1 < length; p++) {
        if (seq[p] != 0 && seq[p + 1] != 0) {
            int from = alias[p], to = alias[p + 1];
            a_out[(size_t)from * length + to] = 1.0f;
            a_in[(size_t)to * length + from] = 1.0f;
        }
    }
    normalise_rows(a_out, count, length);
    normalise_rows(a_in, count, length);
    return count;
}

/* The constant inputs of one batch: row ids into item_emb viewed as
 * [B * L, D], adjacency matrices and the padding mask. */
typedef struct srgnn_graphs {
    mr_tensor *node_rows;     /* I32 [B, L]: row of each node slot's embedding */
    mr_tensor *position_rows; /* I32 [B, L]: row of each position's node state */
    mr_tensor *a_in, *a_out;  /* F32 [B, L, L] */
    mr_tensor *mask;          /* F32 [B, L, 1]: 1 where the id is not padding */
} srgnn_graphs;

/* Builds the graphs of every sequence of seq (contiguous I32 [B, L]) in ctx. Returns false
 * (error stored in ctx) when the arena cannot grow. */
static bool build_graphs(mr_ctx *ctx, const mr_tensor *seq, srgnn_graphs *g) {
    int64_t batch = seq->shape[0], length = seq->shape[1];
    int64_t rows_shape[2] = {batch, length};
    int64_t square_shape[3] = {batch, length, length};
    int64_t mask_shape[3] = {batch, length, 1};
    g->node_rows = mr_tensor_new(ctx, MR_I32, 2, rows_shape);
    g->position_rows = mr_tensor_new(ctx, MR_I32, 2, rows_shape);
    g->a_in = mr_tensor_new(ctx, MR_F32, 3, square_shape);
    g->a_out = mr_tensor_new(ctx, MR_F32, 3, square_shape);
    g->mask = mr_tensor_new(ctx, MR_F32, 3, mask_shape);
    if (g->node_rows == NULL || g->position_rows == NULL || g->a_in == NULL ||
        g->a_out == NULL || g->mask == NULL) {
        return false;
    }

#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        const int32_t *ids = seq->idata + b * length;
        int32_t *nodes = g->node_rows->idata + b * length;
        int32_t *positions = g->position_rows->idata + b * length;
        size_t square = (size_t)(length * length);
        float *mask = g->mask->data + b * length;
        for (int64_t p = 0; p < length; p++) {
            mask[p] = ids[p] != 0 ? 1.0f : 0.0f;
        }
        mr_rec_srgnn_graph(ids, (int)length, nodes, positions,
                           g->a_in->data + b * square, g->a_out->data + b * square);

        /* Slot and position indices become rows of item_emb [B * L, D]. */
        for (int64_t p = 0; p < length; p++) {
            nodes[p] += (int32_t)(b * length);
            positions[p] += (int32_t)(b * length);
        }
    }
    return true;
}

/* Builds one step of the gated graph cell on node states h [B, L, D]. */
static mr_tensor *graph_cell(mr_ctx *ctx, const srgnn_state *s, const srgnn_graphs *g,
                             mr_tensor *h) {
    mr_paramset *ps = s->ps;
    int64_t dim = s->dim;

    mr_tensor *from_in = mr_rec_rnn_linear_forward(ctx, ps, &s->edge_in, h);
    mr_tensor *from_out = mr_rec_rnn_linear_forward(ctx, ps, &s->edge_out, h);
    mr_tensor *input_in = mr_tensor_add(ctx, mr_tensor_matmul(ctx, g->a_in, from_in, 0),
                                        mr_paramset_get(ps, s->b_iah));
    mr_tensor *input_out = mr_tensor_add(ctx, mr_tensor_matmul(ctx, g->a_out, from_out, 0),
                                         mr_paramset_get(ps, s->b_ioh));
    mr_tensor *parts[2] = {input_in, input_out};
    mr_tensor *inputs = mr_tensor_concat(ctx, parts, 2, 2);

    /* Gate pre-activations [B, L, 3D] in the order reset, update, new. */
    mr_tensor *gi = mr_tensor_linear(ctx, inputs, mr_paramset_get(ps, s->w_ih),
                                     mr_paramset_get(ps, s->b_ih));
    mr_tensor *gh = mr_tensor_linear(ctx, h, mr_paramset_get(ps, s->w_hh),
                                     mr_paramset_get(ps, s->b_hh));
    mr_tensor *reset = mr_tensor_sigmoid(
        ctx, mr_tensor_add(ctx, mr_tensor_slice(ctx, gi, 2, 0, dim),
                           mr_tensor_slice(ctx, gh, 2, 0, dim)));
    mr_tensor *update = mr_tensor_sigmoid(
        ctx, mr_tensor_add(ctx, mr_tensor_slice(ctx, gi, 2, dim, dim),
                           mr_tensor_slice(ctx, gh, 2, dim, dim)));
    mr_tensor *candidate = mr_tensor_tanh(
        ctx, mr_tensor_add(ctx, mr_tensor_slice(ctx, gi, 2, 2 * dim, dim),
                           mr_tensor_mul(ctx, reset, mr_tensor_slice(ctx, gh, 2, 2 * dim, dim))));

    /* (1 - z) * h + z * n, written as h + z * (n - h). */
    return mr_tensor_add(ctx, h, mr_tensor_mul(ctx, update, mr_tensor_sub(ctx, candidate, h)));
}

/* Builds the graph steps and the attention readout; rng is not used (the
 * reference has no dropout here). */
static mr_tensor *srgnn_forward(void *state, mr_ctx *ctx, mr_tensor *item_emb, mr_tensor *seq,
                                mr_rng *rng) {
    srgnn_state *s = state;
    (void)rng;
    if (item_emb == NULL || seq == NULL) {
        if (item_emb != NULL) {
            mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                        "srgnn: seq is NULL; the graph needs the item ids");
        }
        return NULL;
    }
    if (!mr_rec_rnn_check_inputs(ctx, "srgnn", item_emb, seq, s->dim)) {
        return NULL;
    }
    mr_paramset *ps = s->ps;
    int64_t batch = item_emb->shape[0], length = item_emb->shape[1];

    srgnn_graphs g;
    seq = mr_tensor_contiguous(ctx, seq);
    if (seq == NULL || !build_graphs(ctx, seq, &g)) {
        return NULL;
    }

    /* Node states start from the embedding at each node's first position. */
    int64_t flat_shape[2] = {batch * length, s->dim};
    mr_tensor *flat = mr_tensor_reshape(ctx, item_emb, 2, flat_shape);
    mr_tensor *h = mr_tensor_embedding(ctx, flat, g.node_rows, -1);
    for (int step = 0; step < s->steps; step++) {
        h = graph_cell(ctx, s, &g, h);
    }

    /* Each position reads its node's state. */
    mr_tensor *node_flat = mr_tensor_reshape(ctx, h, 2, flat_shape);
    mr_tensor *seq_hidden = mr_tensor_embedding(ctx, node_flat, g.position_rows, -1);
    mr_tensor *last = mr_rec_rnn_last_step(ctx, seq_hidden);

    /* Soft attention over the non-padding positions. */
    int64_t query_shape[3] = {batch, 1, s->dim};
    mr_tensor *q1 = mr_tensor_reshape(
        ctx, mr_rec_rnn_linear_forward(ctx, ps, &s->linear_one, last), 3, query_shape);
    mr_tensor *q2 = mr_rec_rnn_linear_forward(ctx, ps, &s->linear_two, seq_hidden);
    mr_tensor *alpha = mr_rec_rnn_linear_forward(
        ctx, ps, &s->linear_three, mr_tensor_sigmoid(ctx, mr_tensor_add(ctx, q1, q2)));
    mr_tensor *weighted = mr_tensor_mul(ctx, mr_tensor_mul(ctx, alpha, seq_hidden), g.mask);
    mr_tensor *readout = mr_tensor_sum(ctx, weighted, 1, false);

    mr_tensor *parts[2] = {readout, last};
    return mr_rec_rnn_linear_forward(ctx, ps, &s->linear_transform,
                                     mr_tensor_concat(ctx, parts, 2, 1));
}

/* Padding only adds the isolated padding node and masked positions, so an
 * input cut to fewer padding positions gives the same user vector, with
 * or without an adapter. */
const mr_rec_backbone_ops mr_rec_srgnn_ops = {srgnn_declare, srgnn_init, srgnn_forward,
                                              srgnn_free, true, true};
