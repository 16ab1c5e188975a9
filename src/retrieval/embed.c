/*
 * Embedding the passages of an index with a GGUF language model
 * (`multiround index embed`). Batches of passages without a vector of the
 * model are read in rowid order and embedded with mr_llama_embed(). Each
 * batch is committed on its own, so a rerun resumes where a run stopped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "retriever_internal.h"

/* Default passages per batch. */
#define EMBED_DEFAULT_BATCH 64

void mr_passage_embed_options_default(mr_passage_embed_options *options) {
    memset(options, 0, sizeof *options);
    options->batch_size = EMBED_DEFAULT_BATCH;
    options->max_tokens = MR_EMBEDDING_DEFAULT_MAX_TOKENS;
    options->progress_seconds = 10.0;
}

/* Seconds from a monotonic clock. */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One batch of passages read from the index. */
typedef struct embed_batch {
    int count;
    int64_t last_rowid; /* rowid of the last passage read */
    char **ids;         /* [batch_size] */
    char **texts;       /* [batch_size] title, newline, text */
} embed_batch;

/* Frees the strings of the batch's passages. */
static void batch_clear(embed_batch *batch) {
    for (int i = 0; i < batch->count; i++) {
        free(batch->ids[i]);
        free(batch->texts[i]);
        batch->ids[i] = NULL;
        batch->texts[i] = NULL;
    }
    batch->count = 0;
}

/* Copies a column's text into a new heap string. */
static char *copy_text(sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    size_t length = (size_t)sqlite3_column_bytes(stmt, column);
    char *copy = malloc(length + 1);
    if (copy != NULL) {
        if (length > 0) {
            memcpy(copy, text, length);
        }
        copy[length] = '\0';
    }
    return copy;
}

/* Builds the embedded text of a passage: "title\ntext", or text alone. */
static char *passage_text(sqlite3_stmt *stmt) {
    const unsigned char *title = sqlite3_column_text(stmt, 2);
    const unsigned char *text = sqlite3_column_text(stmt, 3);
    size_t title_length = (size_t)sqlite3_column_bytes(stmt, 2);
    size_t text_length = (size_t)sqlite3_column_bytes(stmt, 3);
    char *joined = malloc(title_length + text_length + 2);
    if (joined == NULL) {
        return NULL;
    }
    size_t used = 0;
    if (title_length > 0) {
        memcpy(joined, title, title_length);
        joined[title_length] = '\n';
        used = title_length + 1;
    }
    if (text_length > 0) {
        memcpy(joined + used, text, text_length);
    }
    joined[used + text_length] = '\0';
    return joined;
}

/*
 * Reads the next batch_size passages after batch->last_rowid that have no
 * vector of model_id.
 */
static mr_status read_batch(sqlite3 *db, const char *path, sqlite3_stmt *stmt,
                            int64_t model_id, int batch_size, embed_batch *batch,
                            mr_error *err) {
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, batch->last_rowid);
    sqlite3_bind_int64(stmt, 2, model_id);
    sqlite3_bind_int(stmt, 3, batch_size);
    int rc;
    mr_status status = MR_OK;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && batch->count < batch_size) {
        int i = batch->count;
        batch->last_rowid = sqlite3_column_int64(stmt, 0);
        batch->ids[i] = copy_text(stmt, 1);
        batch->texts[i] = passage_text(stmt);
        batch->count++;
        if (batch->ids[i] == NULL || batch->texts[i] == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                  "retriever: out of memory reading passages of %s", path);
            break;
        }
    }
    if (status == MR_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: reading passages of %s failed: %s",
                              path, sqlite3_errmsg(db));
    }
    sqlite3_reset(stmt);
    return status;
}

/* Counts the passages and those with a vector of model_id. */
static mr_status count_passages(sqlite3 *db, const char *path, int64_t model_id,
                                mr_passage_embed_stats *stats, mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    const char *sql = "SELECT (SELECT count(*) FROM passages), (SELECT count(*) FROM"
                      " embeddings AS e JOIN passages AS p ON p.rowid = e.passage_rowid"
                      " WHERE e.model_id = ?1)";
    mr_status status = MR_OK;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK ||
        (sqlite3_bind_int64(stmt, 1, model_id), sqlite3_step(stmt)) != SQLITE_ROW) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: counting passages of %s failed: %s",
                              path, sqlite3_errmsg(db));
    } else {
        stats->total = sqlite3_column_int64(stmt, 0);
        stats->existing = sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    return status;
}

/* Counts the tokens that mr_llama_embed() runs for the batch's texts. */
static int64_t count_tokens(const mr_tokenizer *tokenizer, const embed_batch *batch,
                            int max_tokens) {
    int64_t total = 0;
    bool add_bos = mr_tokenizer_add_bos_default(tokenizer);
    for (int i = 0; i < batch->count; i++) {
        int64_t needed = 0;
        mr_error ignored;
        mr_tokenizer_encode(tokenizer, batch->texts[i], strlen(batch->texts[i]), add_bos, false,
                            NULL, 0, &needed, &ignored);
        total += needed < max_tokens ? needed : max_tokens;
    }
    return total;
}

/* Embeds and stores the passages without a vector, batch by batch. */
static mr_status embed_missing(sqlite3 *db, const char *path, const mr_llama *llama,
                               const mr_tokenizer *tokenizer, const mr_embedding_model *model,
                               int64_t model_id, const mr_passage_embed_options *options,
                               mr_passage_embed_stats *stats, double start,
                               int64_t *reported, mr_error *err) {
    const char *sql = "SELECT rowid, id, title, text FROM passages WHERE rowid > ?1 AND rowid"
                      " NOT IN (SELECT passage_rowid FROM embeddings WHERE model_id = ?2)"
                      " ORDER BY rowid LIMIT ?3";
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_IO, "retriever: cannot prepare the passage reader: %s",
                            sqlite3_errmsg(db));
    }
    embed_batch batch;
    memset(&batch, 0, sizeof batch);
    batch.ids = calloc((size_t)options->batch_size, sizeof *batch.ids);
    batch.texts = calloc((size_t)options->batch_size, sizeof *batch.texts);
    float *vectors = malloc((size_t)options->batch_size * (size_t)model->dim * sizeof(float));
    mr_status status = MR_OK;
    if (batch.ids == NULL || batch.texts == NULL || vectors == NULL) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY,
                              "retriever: out of memory for a batch of %d passages",
                              options->batch_size);
    }

    mr_llama_embed_options embed_options;
    mr_llama_embed_options_default(&embed_options);
    embed_options.max_tokens = model->max_tokens;
    embed_options.normalize = model->normalized;
    double last_progress = start;
    while (status == MR_OK) {
        status = read_batch(db, path, stmt, model_id, options->batch_size, &batch, err);
        if (status != MR_OK || batch.count == 0) {
            break;
        }
        status = mr_llama_embed(llama, tokenizer, (const char *const *)batch.texts, batch.count,
                                &embed_options, vectors, err);
        if (status == MR_OK) {
            status = retrieval_store_vectors(db, path, model, (const char *const *)batch.ids,
                                             vectors, batch.count, err);
        }
        if (status != MR_OK) {
            break;
        }

        stats->embedded += batch.count;
        stats->tokens += count_tokens(tokenizer, &batch, model->max_tokens);
        batch_clear(&batch);
        double now = now_seconds();
        stats->seconds = now - start;
        if (options->progress != NULL && now - last_progress >= options->progress_seconds) {
            options->progress(stats, options->progress_user_data);
            last_progress = now;
            *reported = stats->embedded;
        }
    }

    batch_clear(&batch);
    free(batch.ids);
    free(batch.texts);
    free(vectors);
    sqlite3_finalize(stmt);
    return status;
}

mr_status mr_passage_index_embed(const char *db_path, const char *model_path,
                                 const mr_passage_embed_options *options,
                                 mr_passage_embed_stats *stats, mr_error *err) {
    mr_passage_embed_options defaults;
    mr_passage_embed_stats local_stats;
    if (options == NULL) {
        mr_passage_embed_options_default(&defaults);
        options = &defaults;
    }
    if (stats == NULL) {
        stats = &local_stats;
    }
    memset(stats, 0, sizeof *stats);
    double start = now_seconds();
    if (db_path == NULL || model_path == NULL || options->batch_size < 1 ||
        options->max_tokens < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: embedding needs an index, a model, batch_size >= 1 and "
                            "max_tokens >= 1 (got %d and %d)",
                            options->batch_size, options->max_tokens);
    }

    /* The model first: a wrong path fails before the index is touched. */
    mr_llama *llama = NULL;
    mr_tokenizer *tokenizer = NULL;
    mr_embedding_model model;
    mr_status status = retrieval_open_encoder(model_path, &llama, &tokenizer, &model, err);
    if (status != MR_OK) {
        return status;
    }
    int context = mr_llama_get_config(llama)->context_length;
    model.max_tokens = options->max_tokens < context ? options->max_tokens : context;
    model.normalized = true;

    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        status = mr_error_set(err, MR_ERR_IO, "retriever: cannot open %s: %s", db_path,
                              db != NULL ? sqlite3_errmsg(db) : "out of memory");
    }
    if (status == MR_OK) {
        sqlite3_busy_timeout(db, 10000);
        status = retrieval_check_format(db, db_path, err);
    }
    if (status == MR_OK) {
        status = retrieval_create_vector_tables(db, db_path, err);
    }
    int64_t model_id = 0;
    int64_t reported = -1;
    if (status == MR_OK) {
        status = retrieval_register_model(db, db_path, &model, &model_id, err);
    }
    if (status == MR_OK) {
        status = count_passages(db, db_path, model_id, stats, err);
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "retriever",
               "embedding %lld of %lld passages of %s with %s (dim %d, at most %d tokens each)",
               (long long)(stats->total - stats->existing), (long long)stats->total, db_path,
               model.name, model.dim, model.max_tokens);
        status = embed_missing(db, db_path, llama, tokenizer, &model, model_id, options, stats,
                               start, &reported, err);
    }

    /* A last progress call, unless the last batch was just reported. */
    stats->seconds = now_seconds() - start;
    if (status == MR_OK && options->progress != NULL && reported != stats->embedded) {
        options->progress(stats, options->progress_user_data);
    }
    sqlite3_close(db);
    mr_llama_free(llama);
    mr_tokenizer_free(tokenizer);
    return status;
}
