/*
 * Dense vectors in a passage index: their tables, the registry of
 * embedding models, storing vectors, and opening a GGUF model as an
 * encoder with its identity.
 *
 *   embedding_models(model_id, name, sha256, dim, max_tokens, normalized, pooling)
 *   embeddings(model_id, passage_rowid, vector)   vector: dim float32 values
 *
 * Each vector is keyed by the rowid of its passage. The tables are
 * created by the first embedding run, so an index without vectors keeps
 * the layout of mr_passage_index_build().
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "multiround/gguf.h"
#include "retriever_internal.h"
#include "train/sha256.h"

/* The only pooling the index uses, stored for readers of the table. */
static const char index_pooling[] = "mean";

static const char create_tables_sql[] =
    "CREATE TABLE IF NOT EXISTS embedding_models("
    " model_id INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,"
    " dim INTEGER NOT NULL, max_tokens INTEGER NOT NULL, normalized INTEGER NOT NULL,"
    " pooling TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS embeddings("
    " model_id INTEGER NOT NULL REFERENCES embedding_models(model_id),"
    " passage_rowid INTEGER NOT NULL, vector BLOB NOT NULL,"
    " PRIMARY KEY(model_id, passage_rowid)) WITHOUT ROWID;";

mr_status retrieval_create_vector_tables(sqlite3 *db, const char *path, mr_error *err) {
    char *message = NULL;
    if (sqlite3_exec(db, create_tables_sql, NULL, NULL, &message) != SQLITE_OK) {
        mr_status status = mr_error_set(err, MR_ERR_IO,
                                        "retriever: cannot create the vector tables in %s: %s",
                                        path, message != NULL ? message : "unknown error");
        sqlite3_free(message);
        return status;
    }
    return MR_OK;
}

mr_status retrieval_register_model(sqlite3 *db, const char *path,
                                   const mr_embedding_model *model, int64_t *model_id,
                                   mr_error *err) {
    *model_id = 0;
    sqlite3_stmt *stmt = NULL;
    const char *find = "SELECT model_id, dim, max_tokens, normalized FROM embedding_models"
                       " WHERE sha256 = ?1";
    if (sqlite3_prepare_v2(db, find, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot read the models of %s: %s", path,
                            sqlite3_errmsg(db));
    }
    sqlite3_bind_text(stmt, 1, model->sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    mr_status status = MR_OK;
    if (rc == SQLITE_ROW) {
        int dim = sqlite3_column_int(stmt, 1);
        int max_tokens = sqlite3_column_int(stmt, 2);
        bool normalized = sqlite3_column_int(stmt, 3) != 0;
        *model_id = sqlite3_column_int64(stmt, 0);
        if (dim != model->dim || max_tokens != model->max_tokens ||
            normalized != model->normalized) {
            status = mr_error_set(
                err, MR_ERR_INVALID_ARGUMENT,
                "retriever: %s holds vectors of %s made with dim %d, max_tokens %d, normalized "
                "%s, but these have dim %d, max_tokens %d, normalized %s; use the same settings "
                "to add to them",
                path, model->name, dim, max_tokens, normalized ? "yes" : "no", model->dim,
                model->max_tokens, model->normalized ? "yes" : "no");
        }
    } else if (rc != SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot read the models of %s: %s",
                              path, sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    if (status != MR_OK || *model_id != 0) {
        return status;
    }

    const char *insert = "INSERT INTO embedding_models(name, sha256, dim, max_tokens,"
                         " normalized, pooling) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    if (sqlite3_prepare_v2(db, insert, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot register %s in %s: %s",
                            model->name, path, sqlite3_errmsg(db));
    }
    sqlite3_bind_text(stmt, 1, model->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, model->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, model->dim);
    sqlite3_bind_int(stmt, 4, model->max_tokens);
    sqlite3_bind_int(stmt, 5, model->normalized ? 1 : 0);
    sqlite3_bind_text(stmt, 6, index_pooling, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot register %s in %s: %s",
                              model->name, path, sqlite3_errmsg(db));
    } else {
        *model_id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(stmt);
    return status;
}

/* Checks the fields of a caller's model description. */
static mr_status check_model(const mr_embedding_model *model, mr_error *err) {
    size_t length = strnlen(model->sha256, sizeof model->sha256);
    bool hex = length == MR_EMBEDDING_SHA256_LENGTH;
    for (size_t i = 0; hex && i < length; i++) {
        char c = model->sha256[i];
        hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    if (!hex) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: model sha256 '%.*s' is not 64 lowercase hex digits",
                            (int)length, model->sha256);
    }
    if (model->dim < 1 || model->max_tokens < 1 ||
        strnlen(model->name, sizeof model->name) == sizeof model->name) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: model dim %d and max_tokens %d must be >= 1, and the "
                            "name NUL-terminated",
                            model->dim, model->max_tokens);
    }
    return MR_OK;
}

/* Opens the index at path read-write and checks that it is an index. */
static mr_status open_writable(const char *path, sqlite3 **db, mr_error *err) {
    *db = NULL;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s", path,
                                        *db != NULL ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return status;
    }
    sqlite3_busy_timeout(*db, 10000);
    mr_status status = retrieval_check_format(*db, path, err);
    if (status != MR_OK) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return status;
}

/* Inserts the vectors inside the caller's transaction. */
static mr_status insert_vectors(sqlite3 *db, const char *path, int64_t model_id,
                                const mr_embedding_model *model, const char *const *ids,
                                const float *vectors, int n, mr_error *err) {
    sqlite3_stmt *find = NULL, *insert = NULL;
    const char *find_sql = "SELECT rowid FROM passages WHERE id = ?1";
    const char *insert_sql = "INSERT OR REPLACE INTO embeddings(model_id, passage_rowid, vector)"
                             " VALUES (?1, ?2, ?3)";
    mr_status status = MR_OK;
    if (sqlite3_prepare_v2(db, find_sql, -1, &find, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, insert_sql, -1, &insert, NULL) != SQLITE_OK) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot prepare vector writes on %s: %s",
                              path, sqlite3_errmsg(db));
    }

    for (int i = 0; i < n && status == MR_OK; i++) {
        sqlite3_reset(find);
        sqlite3_bind_text(find, 1, ids[i], -1, SQLITE_STATIC);
        if (sqlite3_step(find) != SQLITE_ROW) {
            status = mr_error_set(err, MR_ERR_NOT_FOUND,
                                  "retriever: no passage with id '%s' in %s; index the passage "
                                  "before storing its vector",
                                  ids[i], path);
            break;
        }
        int64_t rowid = sqlite3_column_int64(find, 0);

        sqlite3_reset(insert);
        sqlite3_bind_int64(insert, 1, model_id);
        sqlite3_bind_int64(insert, 2, rowid);
        sqlite3_bind_blob(insert, 3, vectors + (int64_t)i * model->dim,
                          model->dim * (int)sizeof(float), SQLITE_STATIC);
        if (sqlite3_step(insert) != SQLITE_DONE) {
            status = mr_error_set(err, MR_ERR_IO,
                                  "retriever: cannot store the vector of '%s' in %s: %s", ids[i],
                                  path, sqlite3_errmsg(db));
        }
    }
    sqlite3_finalize(find);
    sqlite3_finalize(insert);
    return status;
}

mr_status retrieval_store_vectors(sqlite3 *db, const char *path,
                                  const mr_embedding_model *model, const char *const *ids,
                                  const float *vectors, int n, mr_error *err) {
    for (int64_t i = 0; i < (int64_t)n * model->dim; i++) {
        if (!isfinite(vectors[i])) {
            return mr_error_set(err, MR_ERR_NUMERIC,
                                "retriever: vector %lld of %s has the non-finite value %g at "
                                "position %lld",
                                (long long)(i / model->dim), model->name, (double)vectors[i],
                                (long long)(i % model->dim));
        }
    }
    for (int i = 0; i < n; i++) {
        if (ids == NULL || ids[i] == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: passage id %d is NULL",
                                i);
        }
    }

    mr_status status = retrieval_create_vector_tables(db, path, err);
    if (status != MR_OK) {
        return status;
    }
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot start a transaction on %s: %s",
                            path, sqlite3_errmsg(db));
    }
    int64_t model_id = 0;
    status = retrieval_register_model(db, path, model, &model_id, err);
    if (status == MR_OK) {
        status = insert_vectors(db, path, model_id, model, ids, vectors, n, err);
    }
    if (status == MR_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot commit vectors to %s: %s", path,
                              sqlite3_errmsg(db));
    }
    if (status != MR_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return status;
}

mr_status mr_passage_vectors_store(const char *db_path, const mr_embedding_model *model,
                                   const char *const *ids, const float *vectors, int n,
                                   mr_error *err) {
    if (db_path == NULL || model == NULL || n < 0 || (n > 0 && (ids == NULL || vectors == NULL))) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: storing vectors needs a path, a model, and ids and "
                            "vectors for n = %d passages",
                            n);
    }
    mr_status status = check_model(model, err);
    if (status != MR_OK) {
        return status;
    }
    sqlite3 *db = NULL;
    status = open_writable(db_path, &db, err);
    if (status == MR_OK) {
        status = retrieval_store_vectors(db, db_path, model, ids, vectors, n, err);
    }
    sqlite3_close(db);
    return status;
}

/* Copies the text of column into dst of size bytes, cut if longer. */
static void copy_text(sqlite3_stmt *stmt, int column, char *dst, size_t size) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    snprintf(dst, size, "%s", text != NULL ? (const char *)text : "");
}

mr_status retrieval_list_models(sqlite3 *db, const char *path, mr_embedding_model *out,
                                int capacity, int *count, mr_error *err) {
    *count = 0;
    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT name, sha256, dim, max_tokens, normalized FROM embedding_models"
                      " ORDER BY model_id";
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        /* An index that was never embedded has no such table. */
        return MR_OK;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (*count < capacity) {
            mr_embedding_model *model = &out[*count];
            memset(model, 0, sizeof *model);
            copy_text(stmt, 0, model->name, sizeof model->name);
            copy_text(stmt, 1, model->sha256, sizeof model->sha256);
            model->dim = sqlite3_column_int(stmt, 2);
            model->max_tokens = sqlite3_column_int(stmt, 3);
            model->normalized = sqlite3_column_int(stmt, 4) != 0;
        }
        (*count)++;
    }
    mr_status status = MR_OK;
    if (rc != SQLITE_DONE) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot list the models of %s: %s",
                              path, sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    return status;
}

mr_status mr_passage_index_models(const char *db_path, mr_embedding_model *out, int capacity,
                                  int *count, mr_error *err) {
    *count = 0;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s", db_path,
                                        db != NULL ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return status;
    }
    mr_status status = retrieval_check_format(db, db_path, err);
    if (status == MR_OK) {
        status = retrieval_list_models(db, db_path, out, capacity, count, err);
    }
    sqlite3_close(db);
    return status;
}

mr_status retrieval_open_encoder(const char *model_path, mr_llama **llama,
                                 mr_tokenizer **tokenizer, mr_embedding_model *model,
                                 mr_error *err) {
    *llama = NULL;
    *tokenizer = NULL;
    memset(model, 0, sizeof *model);

    /* NOTE: the identity is the hash of the file, so a model file of
     * several GB is read once more here, at disk speed. */
    mr_status status = mr_sha256_file(model_path, model->sha256, err);
    if (status != MR_OK) {
        return status;
    }
    const char *slash = strrchr(model_path, '/');
    snprintf(model->name, sizeof model->name, "%s", slash != NULL ? slash + 1 : model_path);

    mr_gguf *gguf = NULL;
    status = mr_gguf_open(model_path, &gguf, err);
    if (status == MR_OK) {
        status = mr_tokenizer_from_gguf(gguf, tokenizer, err);
    }
    mr_gguf_close(gguf);
    if (status == MR_OK) {
        *llama = mr_llama_load_gguf(model_path, err);
        if (*llama == NULL) {
            status = err != NULL ? err->status : MR_ERR_FORMAT;
        }
    }
    if (status != MR_OK) {
        mr_tokenizer_free(*tokenizer);
        *tokenizer = NULL;
        return status;
    }
    model->dim = mr_llama_get_config(*llama)->dim;
    return MR_OK;
}
