/*
 * Private parts of mr_retriever shared by BM25 search (retriever.c),
 * dense vectors and search (dense.c), embedding an index (embed.c) and
 * rank fusion (fusion.c).
 */
#ifndef MR_RETRIEVAL_RETRIEVER_INTERNAL_H
#define MR_RETRIEVAL_RETRIEVER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <sqlite3.h>

#include "multiround/llama.h"
#include "multiround/retriever.h"
#include "multiround/tokenizer.h"

/* The vectors of one model, loaded from an index, and its encoder. */
typedef struct retrieval_dense {
    mr_embedding_model model;
    int64_t count;      /* N passages */
    int64_t *rowids;    /* [N] ascending */
    float *vectors;     /* [N, dim] row i belongs to rowids[i] */
    mr_llama *llama;    /* the query encoder, or NULL (vectors only) */
    mr_tokenizer *tokenizer;
} retrieval_dense;

struct mr_retriever {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *search;
    sqlite3_stmt *get;
    sqlite3_stmt *get_rowid;   /* a passage by rowid, for dense and hybrid hits */
    sqlite3_stmt *bm25_rowids; /* the BM25 ranking as rowids, for hybrid search */
    sqlite3_stmt *excluded;    /* the rowids of a JSON array of ids */
    mr_retriever_mode mode;
    retrieval_dense *dense;    /* NULL until vectors are loaded */
    double rrf_k;
    int rrf_depth;
    pthread_mutex_t lock; /* serialises every use of db, the statements and dense */
};

/* Checks meta.format and meta.version of the index db opened from path. */
mr_status retrieval_check_format(sqlite3 *db, const char *path, mr_error *err);

/* Builds the JSON array of excluded ids that the statements bind; free
 * it with cJSON_free(). */
mr_status retrieval_exclude_json(const char *const *exclude_ids, int n_exclude, char **json,
                                 mr_error *err);

/* Fills hit from the current row of stmt (id, id_is_integer, title, text);
 * returns false when memory runs out. */
bool retrieval_read_hit(sqlite3_stmt *stmt, mr_passage_hit *hit);

/* Frees the vectors, the encoder and dense itself. dense may be NULL. */
void retrieval_dense_free(retrieval_dense *dense);

/* Creates the tables of dense vectors in db when they do not exist. */
mr_status retrieval_create_vector_tables(sqlite3 *db, const char *path, mr_error *err);

/*
 * Registers model in db, or checks it against the registered entry with
 * the same sha256, and stores its row id in *model_id. Gives
 * MR_ERR_INVALID_ARGUMENT naming both values on a mismatch of dim,
 * max_tokens or normalized.
 */
mr_status retrieval_register_model(sqlite3 *db, const char *path,
                                   const mr_embedding_model *model, int64_t *model_id,
                                   mr_error *err);

/*
 * Stores vectors [n, model->dim] of the passages ids in one transaction of
 * db, registering the model, as mr_passage_vectors_store() does. The
 * caller has checked model.
 */
mr_status retrieval_store_vectors(sqlite3 *db, const char *path,
                                  const mr_embedding_model *model, const char *const *ids,
                                  const float *vectors, int n, mr_error *err);

/* Lists the registered models of db as mr_passage_index_models() does. */
mr_status retrieval_list_models(sqlite3 *db, const char *path, mr_embedding_model *out,
                                int capacity, int *count, mr_error *err);

/*
 * Opens the GGUF file at model_path as an encoder: its weights, its
 * tokenizer, and its identity (file name and SHA-256) in *model with dim
 * set. Fills err and leaves nothing open on failure.
 */
mr_status retrieval_open_encoder(const char *model_path, mr_llama **llama,
                                 mr_tokenizer **tokenizer, mr_embedding_model *model,
                                 mr_error *err);

/*
 * Runs the dense and hybrid modes of a batch of text queries with the
 * lock held: see mr_retriever_search_batch(). The caller has checked k,
 * the exclusions and the mode.
 */
mr_status retrieval_search_dense_batch(mr_retriever *retriever, const char *const *queries,
                                       int n_queries, int k, const char *exclude,
                                       mr_passage_hit *out, int *counts, mr_error *err);

#endif /* MR_RETRIEVAL_RETRIEVER_INTERNAL_H */
