/*
 * Searching a passage index: the handle, its modes, and BM25 ranking with
 * SQLite FTS5. Dense and hybrid ranking are in dense.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <sqlite3.h>

#include "multiround/retriever.h"
#include "retriever_internal.h"
#include "schema.h"

/*
 * FTS5's bm25() is lower-is-better (it returns minus the BM25 sum), so
 * the score is negated to print higher-is-better. Both columns weigh 1.
 * The excluded ids are a JSON array bound as one parameter.
 *
 * The inner query ranks rowids on the FTS5 table alone, and only the k
 * best are joined with passages. Joining before the LIMIT would copy the
 * title and text of every matching passage into the sorter, which made
 * queries on one million passages about 30% slower.
 */
static const char search_sql[] =
    "SELECT p.id, p.id_is_integer, p.title, p.text, best.score FROM"
    " (SELECT rowid, -bm25(passages_fts) AS score FROM passages_fts"
    "  WHERE passages_fts MATCH ?1 AND rowid NOT IN"
    "   (SELECT rowid FROM passages WHERE id IN (SELECT value FROM json_each(?2)))"
    "  ORDER BY bm25(passages_fts), rowid LIMIT ?3) AS best"
    " JOIN passages AS p ON p.rowid = best.rowid"
    " ORDER BY best.score DESC, best.rowid";

static const char get_sql[] =
    "SELECT id, id_is_integer, title, text FROM passages WHERE id = ?1";

static const char get_rowid_sql[] =
    "SELECT id, id_is_integer, title, text FROM passages WHERE rowid = ?1";

/* The BM25 ranking of search_sql as rowids only, for hybrid search. */
static const char bm25_rowids_sql[] =
    "SELECT rowid FROM passages_fts WHERE passages_fts MATCH ?1 AND rowid NOT IN"
    " (SELECT rowid FROM passages WHERE id IN (SELECT value FROM json_each(?2)))"
    " ORDER BY bm25(passages_fts), rowid LIMIT ?3";

static const char excluded_sql[] =
    "SELECT rowid FROM passages WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY rowid";

/* Copies a column's text into a new heap string ("" for NULL). */
static char *copy_column(sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    int length = sqlite3_column_bytes(stmt, column);
    char *copy = malloc((size_t)length + 1);
    if (copy != NULL) {
        if (text != NULL) {
            memcpy(copy, text, (size_t)length);
        }
        copy[length] = '\0';
    }
    return copy;
}

bool retrieval_read_hit(sqlite3_stmt *stmt, mr_passage_hit *hit) {
    memset(hit, 0, sizeof *hit);
    hit->id = copy_column(stmt, 0);
    hit->id_is_integer = sqlite3_column_int(stmt, 1) != 0;
    hit->title = copy_column(stmt, 2);
    hit->text = copy_column(stmt, 3);
    if (hit->id == NULL || hit->title == NULL || hit->text == NULL) {
        mr_passage_hits_free(hit, 1);
        return false;
    }
    return true;
}

void mr_passage_hits_free(mr_passage_hit *hits, int n) {
    if (hits == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        free(hits[i].id);
        free(hits[i].title);
        free(hits[i].text);
        memset(&hits[i], 0, sizeof hits[i]);
    }
}

/*
 * Writes the command that builds an index for path, which is not one:
 * a JSON Lines path becomes the corpus and the same name with ".db" the
 * index; any other path gets placeholders, since it may be a corpus or a
 * database of another program.
 */
static void format_build_hint(const char *path, char *hint, size_t size) {
    size_t length = strlen(path);
    size_t stem = length;
    if (length > 6 && strcmp(path + length - 6, ".jsonl") == 0) {
        stem = length - 6;
    } else if (length > 5 && strcmp(path + length - 5, ".json") == 0) {
        stem = length - 5;
    }
    if (stem == length) {
        snprintf(hint, size, "multiround index build CORPUS.jsonl -o CORPUS.db");
        return;
    }
    snprintf(hint, size, "multiround index build %s -o %.*s.db", path, (int)stem, path);
}

mr_status retrieval_check_format(sqlite3 *db, const char *path, mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT (SELECT value FROM meta WHERE key = 'format'),"
                      " (SELECT value FROM meta WHERE key = 'version')";
    char hint[MR_ERROR_MESSAGE_MAX];
    format_build_hint(path, hint, sizeof hint);
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "retriever: %s is not a multiround passage index (%s); build one "
                            "with '%s'",
                            path, sqlite3_errmsg(db), hint);
    }

    mr_status status = MR_OK;
    if (sqlite3_step(stmt) != SQLITE_ROW || sqlite3_column_text(stmt, 0) == NULL ||
        strcmp((const char *)sqlite3_column_text(stmt, 0), MR_INDEX_FORMAT) != 0) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "retriever: %s is not a multiround passage index; build one "
                              "with '%s'",
                              path, hint);
    } else if (sqlite3_column_text(stmt, 1) == NULL ||
               strcmp((const char *)sqlite3_column_text(stmt, 1), MR_INDEX_VERSION) != 0) {
        const unsigned char *version = sqlite3_column_text(stmt, 1);
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "retriever: %s has index layout version %s but this build "
                              "reads version %s; rebuild the index",
                              path, version != NULL ? (const char *)version : "?",
                              MR_INDEX_VERSION);
    }
    sqlite3_finalize(stmt);
    return status;
}

mr_status mr_retriever_open(const char *path, mr_retriever **out, mr_error *err) {
    *out = NULL;
    struct stat info;
    if (stat(path, &info) != 0) {
        mr_status status = errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO;
        return mr_error_set(err, status, "retriever: cannot open %s: %s", path,
                            strerror(errno));
    }
    if (S_ISDIR(info.st_mode)) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s; give an index file",
                            path, strerror(EISDIR));
    }
    if (access(path, R_OK) != 0) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s", path,
                            strerror(errno));
    }

    mr_retriever *retriever = calloc(1, sizeof *retriever);
    char *path_copy = malloc(strlen(path) + 1);
    if (retriever == NULL || path_copy == NULL) {
        free(retriever);
        free(path_copy);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "retriever: out of memory opening %s",
                            path);
    }
    strcpy(path_copy, path);
    retriever->path = path_copy;
    retriever->mode = MR_RETRIEVER_BM25;
    retriever->rrf_k = MR_RETRIEVER_DEFAULT_RRF_K;
    retriever->rrf_depth = MR_RETRIEVER_DEFAULT_RRF_DEPTH;
    pthread_mutex_init(&retriever->lock, NULL);

    mr_status status = MR_OK;
    if (sqlite3_open_v2(path, &retriever->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s", path,
                              retriever->db != NULL ? sqlite3_errmsg(retriever->db)
                                                    : "out of memory");
    }
    if (status == MR_OK) {
        status = retrieval_check_format(retriever->db, path, err);
    }
    if (status == MR_OK &&
        (sqlite3_prepare_v3(retriever->db, search_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &retriever->search, NULL) != SQLITE_OK ||
         sqlite3_prepare_v3(retriever->db, get_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &retriever->get, NULL) != SQLITE_OK ||
         sqlite3_prepare_v3(retriever->db, get_rowid_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &retriever->get_rowid, NULL) != SQLITE_OK ||
         sqlite3_prepare_v3(retriever->db, bm25_rowids_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &retriever->bm25_rowids, NULL) != SQLITE_OK ||
         sqlite3_prepare_v3(retriever->db, excluded_sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &retriever->excluded, NULL) != SQLITE_OK)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "retriever: cannot prepare queries on %s: %s; rebuild the index",
                              path, sqlite3_errmsg(retriever->db));
    }
    if (status != MR_OK) {
        mr_retriever_close(retriever);
        return status;
    }
    *out = retriever;
    return MR_OK;
}

void mr_retriever_close(mr_retriever *retriever) {
    if (retriever == NULL) {
        return;
    }
    sqlite3_finalize(retriever->search);
    sqlite3_finalize(retriever->get);
    sqlite3_finalize(retriever->get_rowid);
    sqlite3_finalize(retriever->bm25_rowids);
    sqlite3_finalize(retriever->excluded);
    retrieval_dense_free(retriever->dense);
    sqlite3_close(retriever->db);
    pthread_mutex_destroy(&retriever->lock);
    free(retriever->path);
    free(retriever);
}

mr_status mr_retriever_set_mode(mr_retriever *retriever, mr_retriever_mode mode,
                                mr_error *err) {
    if (mode == MR_RETRIEVER_BM25) {
        pthread_mutex_lock(&retriever->lock);
        retriever->mode = mode;
        pthread_mutex_unlock(&retriever->lock);
        return MR_OK;
    }
    if (mode == MR_RETRIEVER_DENSE || mode == MR_RETRIEVER_HYBRID) {
        pthread_mutex_lock(&retriever->lock);
        bool loaded = retriever->dense != NULL;
        if (loaded) {
            retriever->mode = mode;
        }
        pthread_mutex_unlock(&retriever->lock);
        if (!loaded) {
            return mr_error_set(err, MR_ERR_STATE,
                                "retriever: %s search of %s needs passage vectors; call "
                                "mr_retriever_load_embedder() with the embedding model first",
                                mode == MR_RETRIEVER_DENSE ? "dense" : "hybrid",
                                retriever->path);
        }
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: unknown mode %d",
                        (int)mode);
}

mr_status retrieval_exclude_json(const char *const *exclude_ids, int n_exclude, char **json,
                                 mr_error *err) {
    cJSON *array = cJSON_CreateArray();
    bool ok = array != NULL;
    for (int i = 0; ok && i < n_exclude; i++) {
        if (exclude_ids[i] == NULL) {
            cJSON_Delete(array);
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "retriever: excluded id %d of %d is NULL", i, n_exclude);
        }
        cJSON *id = cJSON_CreateString(exclude_ids[i]);
        ok = id != NULL && cJSON_AddItemToArray(array, id);
    }
    *json = ok ? cJSON_PrintUnformatted(array) : NULL;
    cJSON_Delete(array);
    if (*json == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "retriever: out of memory listing %d excluded ids", n_exclude);
    }
    return MR_OK;
}

/* Runs the prepared BM25 search; the caller holds the lock. */
static mr_status search_bm25(mr_retriever *retriever, const char *expression,
                             const char *exclude, int k, mr_passage_hit *out, int *n,
                             mr_error *err) {
    sqlite3_stmt *stmt = retriever->search;
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, expression, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, exclude, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, k);

    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && *n < k) {
        if (!retrieval_read_hit(stmt, &out[*n])) {
            sqlite3_reset(stmt);
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "retriever: out of memory copying hit %d", *n + 1);
        }
        out[*n].score = sqlite3_column_double(stmt, 4);
        (*n)++;
    }
    mr_status status = MR_OK;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: search in %s failed: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return status;
}

/* Runs the BM25 search of one plain-text query; the caller holds the lock. */
static mr_status search_bm25_query(mr_retriever *retriever, const char *query,
                                   const char *exclude, int k, mr_passage_hit *out, int *n,
                                   mr_error *err) {
    char *expression = NULL;
    int n_terms = 0;
    mr_status status = mr_retriever_match_expression(query, &expression, &n_terms, err);
    if (status == MR_OK && n_terms > 0) {
        status = search_bm25(retriever, expression, exclude, k, out, n, err);
    }
    free(expression);
    return status;
}

mr_status mr_retriever_search(mr_retriever *retriever, const char *query, int k,
                              const char *const *exclude_ids, int n_exclude,
                              mr_passage_hit *out, int *n, mr_error *err) {
    *n = 0;
    return mr_retriever_search_batch(retriever, &query, 1, k, exclude_ids, n_exclude, out, n,
                                     err);
}

mr_status mr_retriever_search_batch(mr_retriever *retriever, const char *const *queries,
                                    int n_queries, int k, const char *const *exclude_ids,
                                    int n_exclude, mr_passage_hit *out, int *counts,
                                    mr_error *err) {
    for (int q = 0; q < n_queries; q++) {
        counts[q] = 0;
    }
    if (k < 1 || k > MR_RETRIEVER_MAX_K) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: k is %d; it must be from 1 to %d", k,
                            MR_RETRIEVER_MAX_K);
    }
    if (n_exclude < 0 || (n_exclude > 0 && exclude_ids == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: %d excluded ids with a %s list", n_exclude,
                            exclude_ids == NULL ? "NULL" : "non-NULL");
    }
    if (n_queries < 0 || (n_queries > 0 && queries == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: %d queries with a NULL list", n_queries);
    }
    for (int q = 0; q < n_queries; q++) {
        if (queries[q] == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: query %d is NULL",
                                q);
        }
    }

    char *exclude = NULL;
    mr_status status = retrieval_exclude_json(exclude_ids, n_exclude, &exclude, err);
    if (status != MR_OK) {
        return status;
    }

    pthread_mutex_lock(&retriever->lock);
    if (retriever->mode == MR_RETRIEVER_BM25) {
        for (int q = 0; q < n_queries && status == MR_OK; q++) {
            status = search_bm25_query(retriever, queries[q], exclude, k,
                                       out + (int64_t)q * k, &counts[q], err);
        }
    } else {
        status = retrieval_search_dense_batch(retriever, queries, n_queries, k, exclude, out,
                                              counts, err);
    }
    pthread_mutex_unlock(&retriever->lock);

    if (status != MR_OK) {
        for (int q = 0; q < n_queries; q++) {
            mr_passage_hits_free(out + (int64_t)q * k, counts[q]);
            counts[q] = 0;
        }
    }
    cJSON_free(exclude);
    return status;
}

mr_status mr_retriever_count(mr_retriever *retriever, int64_t *count, mr_error *err) {
    *count = 0;
    pthread_mutex_lock(&retriever->lock);
    sqlite3_stmt *stmt = NULL;
    mr_status status = MR_OK;
    if (sqlite3_prepare_v2(retriever->db, "SELECT count(*) FROM passages", -1, &stmt, NULL) !=
            SQLITE_OK ||
        sqlite3_step(stmt) != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: counting passages in %s failed: %s",
                              retriever->path, sqlite3_errmsg(retriever->db));
    } else {
        *count = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&retriever->lock);
    return status;
}

mr_status mr_retriever_get(mr_retriever *retriever, const char *id, mr_passage_hit *out,
                           mr_error *err) {
    memset(out, 0, sizeof *out);
    if (id == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: the id is NULL");
    }

    pthread_mutex_lock(&retriever->lock);
    sqlite3_stmt *stmt = retriever->get;
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    mr_status status = MR_OK;
    if (rc == SQLITE_ROW) {
        if (!retrieval_read_hit(stmt, out)) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                  "retriever: out of memory copying passage %s", id);
        }
    } else if (rc == SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_NOT_FOUND, "retriever: no passage with id '%s' in %s",
                              id, retriever->path);
    } else {
        status = mr_error_set(err, MR_ERR_IO, "retriever: looking up '%s' in %s failed: %s", id,
                              retriever->path, sqlite3_errmsg(retriever->db));
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    pthread_mutex_unlock(&retriever->lock);
    return status;
}
