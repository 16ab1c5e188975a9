/*
 * Dense and hybrid search: the index's vectors of one model in memory,
 * exact inner-product ranking with one BLAS product per batch of
 * queries, and reciprocal-rank fusion with BM25.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "engine/blas.h"
#include "retriever_internal.h"

/* Maximum scores of one product [queries, N]: 16 Mi floats, 64 MiB. */
#define DENSE_MAX_SCORES ((int64_t)1 << 24)

/* Models named in the error for a model the index has no vectors of. */
#define DENSE_MAX_LISTED_MODELS 8

void retrieval_dense_free(retrieval_dense *dense) {
    if (dense == NULL) {
        return;
    }
    free(dense->rowids);
    free(dense->vectors);
    mr_llama_free(dense->llama);
    mr_tokenizer_free(dense->tokenizer);
    free(dense);
}

/* Reads one count(*) of sql with model_id bound to ?1 (if present). */
static mr_status count_rows(mr_retriever *retriever, const char *sql, int64_t model_id,
                            int64_t *count, mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    mr_status status = MR_OK;
    *count = 0;
    if (sqlite3_prepare_v2(retriever->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot count vectors in %s: %s",
                            retriever->path, sqlite3_errmsg(retriever->db));
    }
    if (sqlite3_bind_parameter_count(stmt) > 0) {
        sqlite3_bind_int64(stmt, 1, model_id);
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        *count = sqlite3_column_int64(stmt, 0);
    } else {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot count vectors in %s: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_finalize(stmt);
    return status;
}

/*
 * Gives MR_ERR_NOT_FOUND for a model the index has no vectors of, naming
 * it (query_name) and the models that the index does have.
 */
static mr_status missing_model_error(mr_retriever *retriever, const char *query_name,
                                     const char *sha256, mr_error *err) {
    mr_embedding_model models[DENSE_MAX_LISTED_MODELS];
    int count = 0;
    mr_error list_err;
    if (retrieval_list_models(retriever->db, retriever->path, models, DENSE_MAX_LISTED_MODELS,
                              &count, &list_err) != MR_OK ||
        count == 0) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "retriever: %s has no passage vectors; embed the passages with "
                            "'multiround index embed %s -m %s'",
                            retriever->path, retriever->path, query_name);
    }

    char listed[MR_ERROR_MESSAGE_MAX / 2] = "";
    size_t used = 0;
    for (int i = 0; i < count && i < DENSE_MAX_LISTED_MODELS && used < sizeof listed; i++) {
        int written = snprintf(listed + used, sizeof listed - used, "%s%s (sha256 %.12s)",
                               i > 0 ? ", " : "", models[i].name, models[i].sha256);
        used += written > 0 ? (size_t)written : 0;
    }
    return mr_error_set(err, MR_ERR_NOT_FOUND,
                        "retriever: the query model %s (sha256 %.12s) did not embed the "
                        "passages of %s, which has vectors of %s only; search with that model "
                        "or embed the passages with 'multiround index embed %s -m %s'",
                        query_name, sha256, retriever->path, listed, retriever->path,
                        query_name);
}

/* Finds the registered model with this sha256; *model_id is 0 if none. */
static mr_status find_model(mr_retriever *retriever, const char *sha256, mr_embedding_model *model,
                            int64_t *model_id, mr_error *err) {
    *model_id = 0;
    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT model_id, name, dim, max_tokens, normalized FROM embedding_models"
                      " WHERE sha256 = ?1";
    if (sqlite3_prepare_v2(retriever->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return MR_OK; /* no vector tables: nothing was embedded */
    }
    sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    mr_status status = MR_OK;
    if (rc == SQLITE_ROW) {
        *model_id = sqlite3_column_int64(stmt, 0);
        const unsigned char *name = sqlite3_column_text(stmt, 1);
        snprintf(model->name, sizeof model->name, "%s", name != NULL ? (const char *)name : "");
        snprintf(model->sha256, sizeof model->sha256, "%s", sha256);
        model->dim = sqlite3_column_int(stmt, 2);
        model->max_tokens = sqlite3_column_int(stmt, 3);
        model->normalized = sqlite3_column_int(stmt, 4) != 0;
    } else if (rc != SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot read the models of %s: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_finalize(stmt);
    return status;
}

/* Reads the model's vectors, one per passage in rowid order, into dense. */
static mr_status read_vectors(mr_retriever *retriever, int64_t model_id, retrieval_dense *dense,
                              mr_error *err) {
    int64_t dim = dense->model.dim;
    dense->rowids = malloc((size_t)(dense->count > 0 ? dense->count : 1) * sizeof(int64_t));
    dense->vectors = malloc((size_t)(dense->count > 0 ? dense->count : 1) * (size_t)dim *
                            sizeof(float));
    if (dense->rowids == NULL || dense->vectors == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "retriever: out of memory for %lld vectors of dim %lld",
                            (long long)dense->count, (long long)dim);
    }

    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT e.passage_rowid, e.vector FROM embeddings AS e"
                      " JOIN passages AS p ON p.rowid = e.passage_rowid"
                      " WHERE e.model_id = ?1 ORDER BY e.passage_rowid";
    if (sqlite3_prepare_v2(retriever->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot read vectors from %s: %s",
                            retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_bind_int64(stmt, 1, model_id);
    int64_t row = 0;
    int rc;
    mr_status status = MR_OK;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && row < dense->count) {
        int bytes = sqlite3_column_bytes(stmt, 1);
        if (bytes != (int)(dim * (int64_t)sizeof(float))) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "retriever: the vector of passage rowid %lld in %s has %d bytes, "
                                  "not %lld; embed the index again",
                                  (long long)sqlite3_column_int64(stmt, 0), retriever->path,
                                  bytes, (long long)(dim * (int64_t)sizeof(float)));
            break;
        }
        dense->rowids[row] = sqlite3_column_int64(stmt, 0);
        memcpy(dense->vectors + row * dim, sqlite3_column_blob(stmt, 1), (size_t)bytes);
        row++;
    }
    if (status == MR_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot read vectors from %s: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_finalize(stmt);
    dense->count = row;
    return status;
}

/*
 * Loads the vectors of the model with this sha256 into a new *out.
 * query_name names the model in errors.
 */
static mr_status load_dense(mr_retriever *retriever, const char *sha256, const char *query_name,
                            retrieval_dense **out, mr_error *err) {
    *out = NULL;
    retrieval_dense *dense = calloc(1, sizeof *dense);
    if (dense == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "retriever: out of memory");
    }

    int64_t model_id = 0;
    mr_status status = find_model(retriever, sha256, &dense->model, &model_id, err);
    if (status == MR_OK && model_id == 0) {
        status = missing_model_error(retriever, query_name, sha256, err);
    }
    int64_t passages = 0;
    if (status == MR_OK) {
        status = count_rows(retriever, "SELECT count(*) FROM passages", 0, &passages, err);
    }
    if (status == MR_OK) {
        status = count_rows(retriever,
                            "SELECT count(*) FROM embeddings AS e JOIN passages AS p"
                            " ON p.rowid = e.passage_rowid WHERE e.model_id = ?1",
                            model_id, &dense->count, err);
    }
    if (status == MR_OK && dense->count < passages) {
        status = mr_error_set(err, MR_ERR_STATE,
                              "retriever: only %lld of the %lld passages of %s have a vector of "
                              "%s; finish with 'multiround index embed %s -m %s'",
                              (long long)dense->count, (long long)passages, retriever->path,
                              dense->model.name, retriever->path, query_name);
    }
    if (status == MR_OK) {
        status = read_vectors(retriever, model_id, dense, err);
    }
    if (status != MR_OK) {
        retrieval_dense_free(dense);
        return status;
    }
    mr_log(MR_LOG_INFO, "retriever", "loaded %lld vectors of dim %d of %s from %s (%.1f MiB)",
           (long long)dense->count, dense->model.dim, dense->model.name, retriever->path,
           (double)dense->count * dense->model.dim * sizeof(float) / 1048576.0);
    *out = dense;
    return MR_OK;
}

mr_status mr_retriever_load_vectors(mr_retriever *retriever, const char *sha256,
                                    mr_error *err) {
    if (sha256 == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: the model sha256 is NULL");
    }
    pthread_mutex_lock(&retriever->lock);
    retrieval_dense *dense = NULL;
    mr_status status = load_dense(retriever, sha256, sha256, &dense, err);
    if (status == MR_OK) {
        retrieval_dense_free(retriever->dense);
        retriever->dense = dense;
    }
    pthread_mutex_unlock(&retriever->lock);
    return status;
}

mr_status mr_retriever_load_embedder(mr_retriever *retriever, const char *model_path,
                                     mr_error *err) {
    if (model_path == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: the model path is NULL");
    }
    mr_llama *llama = NULL;
    mr_tokenizer *tokenizer = NULL;
    mr_embedding_model identity;
    mr_status status = retrieval_open_encoder(model_path, &llama, &tokenizer, &identity, err);
    if (status != MR_OK) {
        return status;
    }

    pthread_mutex_lock(&retriever->lock);
    retrieval_dense *dense = NULL;
    status = load_dense(retriever, identity.sha256, identity.name, &dense, err);
    if (status == MR_OK && dense->model.dim != identity.dim) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "retriever: %s has vectors of dim %d for %s, whose dim is %d; "
                              "embed the index again",
                              retriever->path, dense->model.dim, identity.name, identity.dim);
    }
    if (status == MR_OK) {
        dense->llama = llama;
        dense->tokenizer = tokenizer;
        llama = NULL;
        tokenizer = NULL;
        retrieval_dense_free(retriever->dense);
        retriever->dense = dense;
        dense = NULL;
    }
    pthread_mutex_unlock(&retriever->lock);

    retrieval_dense_free(dense);
    mr_llama_free(llama);
    mr_tokenizer_free(tokenizer);
    return status;
}

mr_status mr_retriever_embedding_model(mr_retriever *retriever, mr_embedding_model *model,
                                       mr_error *err) {
    pthread_mutex_lock(&retriever->lock);
    bool loaded = retriever->dense != NULL;
    if (loaded) {
        *model = retriever->dense->model;
    }
    pthread_mutex_unlock(&retriever->lock);
    if (!loaded) {
        return mr_error_set(err, MR_ERR_STATE, "retriever: no vectors are loaded from %s",
                            retriever->path);
    }
    return MR_OK;
}

mr_status mr_retriever_set_rrf(mr_retriever *retriever, double k, int depth, mr_error *err) {
    if (!isfinite(k) || k < 0.0 || depth < 1 || depth > MR_RETRIEVER_MAX_K) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: RRF k is %g and depth %d; k must be finite and >= 0, "
                            "depth from 1 to %d",
                            k, depth, MR_RETRIEVER_MAX_K);
    }
    pthread_mutex_lock(&retriever->lock);
    retriever->rrf_k = k;
    retriever->rrf_depth = depth;
    pthread_mutex_unlock(&retriever->lock);
    return MR_OK;
}

/* Finds rowid in the ascending rowids [n]; returns its index or -1. */
static int64_t find_rowid(const int64_t *rowids, int64_t n, int64_t rowid) {
    int64_t low = 0, high = n - 1;
    while (low <= high) {
        int64_t mid = low + (high - low) / 2;
        if (rowids[mid] == rowid) {
            return mid;
        }
        if (rowids[mid] < rowid) {
            low = mid + 1;
        } else {
            high = mid - 1;
        }
    }
    return -1;
}

/*
 * Looks up the excluded ids (a JSON array) and stores the ascending
 * indices of their vectors in *indices, *count of them. The caller holds
 * the lock and frees *indices.
 */
static mr_status excluded_indices(mr_retriever *retriever, const char *exclude,
                                  int64_t **indices, int64_t *count, mr_error *err) {
    *indices = NULL;
    *count = 0;
    sqlite3_stmt *stmt = retriever->excluded;
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, exclude, -1, SQLITE_STATIC);
    int64_t capacity = 0;
    int rc;
    mr_status status = MR_OK;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int64_t index = find_rowid(retriever->dense->rowids, retriever->dense->count,
                                   sqlite3_column_int64(stmt, 0));
        if (index < 0) {
            continue;
        }
        if (*count == capacity) {
            capacity = capacity > 0 ? 2 * capacity : 16;
            int64_t *grown = realloc(*indices, (size_t)capacity * sizeof *grown);
            if (grown == NULL) {
                status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                      "retriever: out of memory listing excluded passages");
                break;
            }
            *indices = grown;
        }
        (*indices)[(*count)++] = index;
    }
    if (status == MR_OK && rc != SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: looking up excluded ids in %s failed: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (status != MR_OK) {
        free(*indices);
        *indices = NULL;
        *count = 0;
    }
    return status;
}

/* One candidate of a top-k selection. */
typedef struct scored_index {
    float score;
    int64_t index;
} scored_index;

/* True when a ranks before b: a higher score, or the same score and an
 * earlier passage. */
static bool ranks_before(scored_index a, scored_index b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
}

/* Restores the heap order below slot i of a heap whose root is the
 * candidate that ranks last. */
static void sift_down(scored_index *heap, int size, int i) {
    for (;;) {
        int child = 2 * i + 1;
        if (child >= size) {
            return;
        }
        if (child + 1 < size && ranks_before(heap[child], heap[child + 1])) {
            child++;
        }
        if (!ranks_before(heap[child], heap[i])) {
            return;
        }
        scored_index swap = heap[i];
        heap[i] = heap[child];
        heap[child] = swap;
        i = child;
    }
}

/* Orders candidates best first for qsort. */
static int compare_candidates(const void *a, const void *b) {
    const scored_index *x = a, *y = b;
    return ranks_before(*x, *y) ? -1 : ranks_before(*y, *x) ? 1 : 0;
}

/*
 * Selects the best depth of the N scores, skipping the ascending
 * excluded indices, into best (sorted best first) and returns how many.
 */
static int select_top(const float *scores, int64_t n, const int64_t *excluded,
                      int64_t n_excluded, int depth, scored_index *best) {
    int size = 0;
    int64_t next_excluded = 0;
    for (int64_t i = 0; i < n; i++) {
        if (next_excluded < n_excluded && excluded[next_excluded] == i) {
            next_excluded++;
            continue;
        }
        scored_index candidate = {scores[i], i};
        if (size < depth) {
            /* Sift up: the parent of a slot ranks before it or ties. */
            int slot = size++;
            best[slot] = candidate;
            while (slot > 0 && ranks_before(best[(slot - 1) / 2], best[slot])) {
                scored_index swap = best[slot];
                best[slot] = best[(slot - 1) / 2];
                best[(slot - 1) / 2] = swap;
                slot = (slot - 1) / 2;
            }
        } else if (ranks_before(candidate, best[0])) {
            best[0] = candidate;
            sift_down(best, size, 0);
        }
    }
    qsort(best, (size_t)size, sizeof *best, compare_candidates);
    return size;
}

/*
 * Ranks the vectors for queries [n_queries, dim]: query q's best depth
 * candidates go to ranked[q * depth ..] and their number to counts[q].
 * The caller holds the lock.
 */
static mr_status rank_vectors(const retrieval_dense *dense, const float *queries, int n_queries,
                              int depth, const int64_t *excluded, int64_t n_excluded,
                              scored_index *ranked, int *counts, mr_error *err) {
    int64_t n = dense->count, dim = dense->model.dim;
    int64_t chunk = n > 0 ? DENSE_MAX_SCORES / n : n_queries;
    chunk = chunk < 1 ? 1 : (chunk > n_queries ? n_queries : chunk);
    float *scores = malloc((size_t)(chunk > 0 ? chunk : 1) * (size_t)(n > 0 ? n : 1) *
                           sizeof(float));
    if (scores == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "retriever: out of memory for %lld x %lld scores", (long long)chunk,
                            (long long)n);
    }

    for (int first = 0; first < n_queries; first += (int)chunk) {
        int64_t rows = n_queries - first < chunk ? n_queries - first : chunk;
        /* scores [rows, N] = queries [rows, D] x vectors^T [D, N] */
        mr_sgemm(false, true, rows, n, dim, 1.0f, queries + (int64_t)first * dim, dim,
                 dense->vectors, dim, 0.0f, scores, n);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            counts[first + r] = select_top(scores + r * n, n, excluded, n_excluded, depth,
                                           ranked + (first + r) * (int64_t)depth);
        }
    }
    free(scores);
    return MR_OK;
}

/* Copies the passage with this rowid into hit. The caller holds the lock. */
static mr_status read_rowid_hit(mr_retriever *retriever, int64_t rowid, double score,
                                mr_passage_hit *hit, mr_error *err) {
    sqlite3_stmt *stmt = retriever->get_rowid;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, rowid);
    int rc = sqlite3_step(stmt);
    mr_status status = MR_OK;
    if (rc != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO,
                              "retriever: reading passage rowid %lld of %s failed: %s",
                              (long long)rowid, retriever->path,
                              rc == SQLITE_DONE ? "no such row" : sqlite3_errmsg(retriever->db));
    } else if (!retrieval_read_hit(stmt, hit)) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "retriever: out of memory copying passage rowid %lld",
                              (long long)rowid);
    } else {
        hit->score = score;
    }
    sqlite3_reset(stmt);
    return status;
}

/* Copies the ranked candidates of every query into hits. */
static mr_status read_ranked_hits(mr_retriever *retriever, const scored_index *ranked,
                                  const int *ranked_counts, int n_queries, int depth, int k,
                                  mr_passage_hit *out, int *counts, mr_error *err) {
    for (int q = 0; q < n_queries; q++) {
        int n = ranked_counts[q] < k ? ranked_counts[q] : k;
        for (int i = 0; i < n; i++) {
            const scored_index *c = &ranked[(int64_t)q * depth + i];
            mr_status status = read_rowid_hit(retriever, retriever->dense->rowids[c->index],
                                              c->score, &out[(int64_t)q * k + i], err);
            if (status != MR_OK) {
                return status;
            }
            counts[q]++;
        }
    }
    return MR_OK;
}

mr_status mr_retriever_search_vectors(mr_retriever *retriever, const float *queries,
                                      int n_queries, int k, const char *const *exclude_ids,
                                      int n_exclude, mr_passage_hit *out, int *counts,
                                      mr_error *err) {
    for (int q = 0; q < n_queries; q++) {
        counts[q] = 0;
    }
    if (k < 1 || k > MR_RETRIEVER_MAX_K || n_queries < 0 || (n_queries > 0 && queries == NULL) ||
        n_exclude < 0 || (n_exclude > 0 && exclude_ids == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: vector search got k %d (must be from 1 to %d), %d "
                            "queries and %d excluded ids",
                            k, MR_RETRIEVER_MAX_K, n_queries, n_exclude);
    }
    char *exclude = NULL;
    mr_status status = retrieval_exclude_json(exclude_ids, n_exclude, &exclude, err);
    if (status != MR_OK) {
        return status;
    }

    pthread_mutex_lock(&retriever->lock);
    retrieval_dense *dense = retriever->dense;
    int64_t dim = dense != NULL ? dense->model.dim : 0;
    if (dense == NULL) {
        status = mr_error_set(err, MR_ERR_STATE,
                              "retriever: no vectors are loaded from %s; call "
                              "mr_retriever_load_vectors() first",
                              retriever->path);
    }
    for (int64_t i = 0; status == MR_OK && i < (int64_t)n_queries * dim; i++) {
        if (!isfinite(queries[i])) {
            status = mr_error_set(err, MR_ERR_NUMERIC,
                                  "retriever: query vector %lld has the non-finite value %g",
                                  (long long)(i / dim), (double)queries[i]);
        }
    }
    int64_t *excluded = NULL, n_excluded = 0;
    if (status == MR_OK) {
        status = excluded_indices(retriever, exclude, &excluded, &n_excluded, err);
    }
    scored_index *ranked = NULL;
    int *ranked_counts = NULL;
    if (status == MR_OK) {
        ranked = malloc((size_t)(n_queries > 0 ? n_queries : 1) * (size_t)k * sizeof *ranked);
        ranked_counts = calloc((size_t)(n_queries > 0 ? n_queries : 1), sizeof *ranked_counts);
        if (ranked == NULL || ranked_counts == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                  "retriever: out of memory for %d x %d ranks", n_queries, k);
        }
    }
    if (status == MR_OK) {
        status = rank_vectors(dense, queries, n_queries, k, excluded, n_excluded, ranked,
                              ranked_counts, err);
    }
    if (status == MR_OK) {
        status = read_ranked_hits(retriever, ranked, ranked_counts, n_queries, k, k, out,
                                  counts, err);
    }
    pthread_mutex_unlock(&retriever->lock);

    if (status != MR_OK) {
        for (int q = 0; q < n_queries; q++) {
            mr_passage_hits_free(out + (int64_t)q * k, counts[q]);
            counts[q] = 0;
        }
    }
    free(excluded);
    free(ranked);
    free(ranked_counts);
    cJSON_free(exclude);
    return status;
}

/* Reads the BM25 ranking of query as up to depth rowids. The caller holds
 * the lock. */
static mr_status bm25_ranking(mr_retriever *retriever, const char *query, const char *exclude,
                              int depth, int64_t *rowids, int *count, mr_error *err) {
    *count = 0;
    char *expression = NULL;
    int n_terms = 0;
    mr_status status = mr_retriever_match_expression(query, &expression, &n_terms, err);
    if (status != MR_OK || n_terms == 0) {
        free(expression);
        return status;
    }

    sqlite3_stmt *stmt = retriever->bm25_rowids;
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, expression, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, exclude, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, depth);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && *count < depth) {
        rowids[(*count)++] = sqlite3_column_int64(stmt, 0);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: BM25 search in %s failed: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    free(expression);
    return status;
}

/*
 * Fuses the BM25 ranking and the dense ranking (ranked [dense_count]) of
 * one query and copies the best k passages into out.
 */
static mr_status fuse_query(mr_retriever *retriever, const char *query, const char *exclude,
                            const scored_index *ranked, int dense_count, int depth, int k,
                            int64_t *buffer, double *scores, mr_passage_hit *out, int *count,
                            mr_error *err) {
    /* buffer holds [bm25 depth | dense depth | fused k]. */
    int64_t *bm25 = buffer, *dense = buffer + depth, *fused = buffer + 2 * (int64_t)depth;
    int bm25_count = 0;
    mr_status status = bm25_ranking(retriever, query, exclude, depth, bm25, &bm25_count, err);
    if (status != MR_OK) {
        return status;
    }
    for (int i = 0; i < dense_count; i++) {
        dense[i] = retriever->dense->rowids[ranked[i].index];
    }

    const int64_t *rankings[2] = {bm25, dense};
    int lengths[2] = {bm25_count, dense_count};
    int n_fused = 0;
    status = mr_retrieval_fuse_rrf(rankings, lengths, 2, retriever->rrf_k, fused, scores, k,
                                   &n_fused, err);
    for (int i = 0; status == MR_OK && i < n_fused; i++) {
        status = read_rowid_hit(retriever, fused[i], scores[i], &out[i], err);
        if (status == MR_OK) {
            (*count)++;
        }
    }
    return status;
}

mr_status retrieval_search_dense_batch(mr_retriever *retriever, const char *const *queries,
                                       int n_queries, int k, const char *exclude,
                                       mr_passage_hit *out, int *counts, mr_error *err) {
    retrieval_dense *dense = retriever->dense;
    if (dense == NULL || dense->llama == NULL) {
        return mr_error_set(err, MR_ERR_STATE,
                            "retriever: %s search of %s needs a query encoder; call "
                            "mr_retriever_load_embedder() with the embedding model first",
                            retriever->mode == MR_RETRIEVER_DENSE ? "dense" : "hybrid",
                            retriever->path);
    }
    if (n_queries == 0) {
        return MR_OK;
    }
    bool hybrid = retriever->mode == MR_RETRIEVER_HYBRID;
    int depth = hybrid && retriever->rrf_depth > k ? retriever->rrf_depth : k;

    /* Embed the queries as the passages were embedded. */
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = dense->model.max_tokens;
    options.normalize = dense->model.normalized;
    int64_t dim = dense->model.dim;
    float *vectors = malloc((size_t)n_queries * (size_t)dim * sizeof(float));
    scored_index *ranked = malloc((size_t)n_queries * (size_t)depth * sizeof *ranked);
    int *ranked_counts = calloc((size_t)n_queries, sizeof *ranked_counts);
    int64_t *buffer = malloc((2 * (size_t)depth + (size_t)k) * sizeof *buffer);
    double *scores = malloc((size_t)k * sizeof *scores);
    int64_t *excluded = NULL, n_excluded = 0;
    mr_status status = MR_OK;
    if (vectors == NULL || ranked == NULL || ranked_counts == NULL || buffer == NULL ||
        scores == NULL) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "retriever: out of memory searching %d queries", n_queries);
    }
    if (status == MR_OK) {
        status = mr_llama_embed(dense->llama, dense->tokenizer, queries, n_queries, &options,
                                vectors, err);
    }
    if (status == MR_OK) {
        status = excluded_indices(retriever, exclude, &excluded, &n_excluded, err);
    }

    /* Rank every query in one product, then fuse with BM25 if hybrid. */
    if (status == MR_OK) {
        status = rank_vectors(dense, vectors, n_queries, depth, excluded, n_excluded, ranked,
                              ranked_counts, err);
    }
    if (status == MR_OK && !hybrid) {
        status = read_ranked_hits(retriever, ranked, ranked_counts, n_queries, depth, k, out,
                                  counts, err);
    }
    for (int q = 0; status == MR_OK && hybrid && q < n_queries; q++) {
        status = fuse_query(retriever, queries[q], exclude, ranked + (int64_t)q * depth,
                            ranked_counts[q], depth, k, buffer, scores, out + (int64_t)q * k,
                            &counts[q], err);
    }

    free(vectors);
    free(ranked);
    free(ranked_counts);
    free(buffer);
    free(scores);
    free(excluded);
    return status;
}
