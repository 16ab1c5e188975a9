/*
 * multiround: passage retrieval for retrieval-augmented generation.
 *
 * A corpus is a JSON Lines file of passages. mr_passage_index_build()
 * loads it into an SQLite database with a passages table and an FTS5
 * full-text index over title and text. An mr_retriever opens that
 * database and ranks passages for a natural-language query with BM25,
 * with dense vectors from a language model (mr_passage_index_embed()), or
 * with a fusion of both. The mode is a setting of the handle, so callers
 * keep the same handle and search call.
 */
#ifndef MULTIROUND_RETRIEVER_H
#define MULTIROUND_RETRIEVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Passages in JSON Lines
 * ------------------------------------------------------------------------ */

/* Default maximum length of one JSONL line in bytes (1 MiB). */
#define MR_JSONL_DEFAULT_MAX_LINE_BYTES ((size_t)1 << 20)

/* One passage as read from a JSONL line. Every string is NUL-terminated
 * and owned by the struct; free them with mr_passage_free(). */
typedef struct mr_passage {
    char *id;           /* a string id, or an integer id in decimal */
    bool id_is_integer; /* the line's id was a JSON integer */
    char *title;        /* "" when the line has no title */
    char *text;         /* never empty */
    char *metadata;     /* the line's other fields as a compact JSON object, or NULL */
} mr_passage;

/* Frees the strings of passage and sets them to NULL. passage may be NULL. */
void mr_passage_free(mr_passage *passage);

/*
 * Parses one JSONL line (length bytes, no newline) into *out. The line
 * must be a JSON object with "id" (a non-empty string, or an integer of
 * magnitude at most 2^53), "text" (a non-empty string) and optionally
 * "title" (a string). Other fields go to metadata. An error gives
 * MR_ERR_FORMAT with a message of the form "SOURCE:LINE: problem; fix",
 * and leaves *out zeroed.
 */
mr_status mr_passage_parse(const char *line, size_t length, const char *source,
                           int64_t line_number, mr_passage *out, mr_error *err);

/* A line-by-line reader of a JSONL file or buffer. */
typedef struct mr_jsonl_reader mr_jsonl_reader;

/* Opens the file at path for reading lines of at most max_line_bytes
 * (0 selects MR_JSONL_DEFAULT_MAX_LINE_BYTES). */
mr_status mr_jsonl_reader_open(const char *path, size_t max_line_bytes,
                               mr_jsonl_reader **out, mr_error *err);

/* Like mr_jsonl_reader_open() for size bytes at data, which must stay
 * valid until the reader is closed. name stands for the file in errors. */
mr_status mr_jsonl_reader_open_memory(const void *data, size_t size, const char *name,
                                      size_t max_line_bytes, mr_jsonl_reader **out,
                                      mr_error *err);

/*
 * Reads the next line that is not blank. On MR_OK, *line points to the
 * line without its "\n" or "\r\n" and with a terminating NUL; it stays
 * valid until the next call. *line_number is 1-based and counts blank
 * lines too. At the end of input *line is NULL.
 *
 * A line longer than the limit, one that contains a NUL byte and one that
 * is not valid UTF-8 give MR_ERR_FORMAT naming the file and line. The
 * reader is then past that line, so a caller may skip it and go on.
 * A read error gives MR_ERR_IO and ends the input.
 */
mr_status mr_jsonl_reader_next(mr_jsonl_reader *reader, const char **line, size_t *length,
                               int64_t *line_number, mr_error *err);

/* Closes the file, if any, and frees the reader. reader may be NULL. */
void mr_jsonl_reader_close(mr_jsonl_reader *reader);

/* ------------------------------------------------------------------------
 * Building an index
 * ------------------------------------------------------------------------ */

/* Counts of an index build so far. */
typedef struct mr_passage_index_stats {
    int64_t lines;            /* lines read, blank ones included */
    int64_t added;            /* passages inserted */
    int64_t skipped_existing; /* passages whose id was already in the index */
    int64_t bad;              /* bad lines skipped (only with skip_bad) */
    int64_t total;            /* passages in the index at the end */
    double seconds;           /* time since the build started */
} mr_passage_index_stats;

/* Receives the counts during a build. */
typedef void (*mr_passage_index_progress)(const mr_passage_index_stats *stats,
                                          void *user_data);

/* Settings of mr_passage_index_build(). */
typedef struct mr_passage_index_options {
    int64_t batch_size;      /* passages per transaction (default 10000) */
    bool skip_bad;           /* log bad lines as warnings and go on (default false) */
    size_t max_line_bytes;   /* maximum line length (default 1 MiB) */
    int64_t progress_lines;  /* call progress every this many lines (default 100000) */
    double progress_seconds; /* ... or after this many seconds, whichever comes first
                                (default 10) */
    mr_passage_index_progress progress; /* may be NULL */
    void *progress_user_data;
} mr_passage_index_options;

/* Fills options with the defaults above. */
void mr_passage_index_options_default(mr_passage_index_options *options);

/*
 * Adds the passages of the JSONL file at jsonl_path to the index at
 * db_path, creating the database when it does not exist. A passage whose
 * id is already in the index, from an earlier build or an earlier line,
 * is skipped and counted. options may be NULL for the defaults; stats may
 * be NULL.
 *
 * A bad line stops the build with MR_ERR_FORMAT and a message naming the
 * file and line, unless options->skip_bad is set. The passages before the
 * bad line stay in the index, so a fixed file can be indexed again. The
 * FTS5 index is merged into one segment (FTS5 'optimize') at the end
 * when passages were added.
 */
mr_status mr_passage_index_build(const char *jsonl_path, const char *db_path,
                                 const mr_passage_index_options *options,
                                 mr_passage_index_stats *stats, mr_error *err);

/* ------------------------------------------------------------------------
 * Searching
 * ------------------------------------------------------------------------ */

/* How mr_retriever_search() ranks passages. */
typedef enum mr_retriever_mode {
    MR_RETRIEVER_BM25 = 0,   /* FTS5 BM25 over title and text */
    MR_RETRIEVER_DENSE = 1,  /* inner product of embeddings (see below) */
    MR_RETRIEVER_HYBRID = 2  /* reciprocal-rank fusion of BM25 and dense ranks */
} mr_retriever_mode;

/* Maximum k of one search. */
#define MR_RETRIEVER_MAX_K 10000

/* Maximum number of query terms kept; later terms are dropped. */
#define MR_RETRIEVER_MAX_TERMS 64

/* One ranked passage. The strings are owned by the hit; free them with
 * mr_passage_hits_free(). */
typedef struct mr_passage_hit {
    char *id;
    bool id_is_integer;
    char *title;
    char *text;
    double score; /* higher is better: BM25, cosine (dense) or RRF (hybrid);
                     0 from mr_retriever_get() */
} mr_passage_hit;

/* Frees the strings of n hits (not the array itself). hits may be NULL. */
void mr_passage_hits_free(mr_passage_hit *hits, int n);

/* An open index. One handle may be used from several threads: a mutex
 * serialises its calls. For parallel queries open one handle per thread. */
typedef struct mr_retriever mr_retriever;

/*
 * Opens the index at path read-only in MR_RETRIEVER_BM25 mode. Gives
 * MR_ERR_NOT_FOUND when the file does not exist and MR_ERR_FORMAT when it
 * is not an index written by mr_passage_index_build().
 */
mr_status mr_retriever_open(const char *path, mr_retriever **out, mr_error *err);

/* Closes the index and frees the handle. retriever may be NULL. */
void mr_retriever_close(mr_retriever *retriever);

/* Selects the ranking. Dense and hybrid need an encoder from
 * mr_retriever_load_embedder() (or, for mr_retriever_search_vectors()
 * only, vectors from mr_retriever_load_vectors()); without one they give
 * MR_ERR_STATE and leave the mode unchanged. */
mr_status mr_retriever_set_mode(mr_retriever *retriever, mr_retriever_mode mode,
                                mr_error *err);

/*
 * Ranks the passages for query in the current mode and writes the best
 * min(k, matches) to out[0..*n-1], best first, with higher-is-better
 * scores (BM25, cosine or RRF). Passages whose id is one of
 * exclude_ids[0..n_exclude-1] are never returned. Ties are broken by
 * insertion order. k must be in [1, MR_RETRIEVER_MAX_K] and out must have
 * room for k hits.
 *
 * The query is plain text. For BM25 it is turned into an FTS5 expression
 * by mr_retriever_match_expression(), so FTS5 syntax in it is never
 * interpreted. In BM25 mode a query with no terms gives *n = 0 and MR_OK;
 * dense mode ranks every passage for any query, and hybrid mode then
 * fuses the dense ranking alone.
 */
mr_status mr_retriever_search(mr_retriever *retriever, const char *query, int k,
                              const char *const *exclude_ids, int n_exclude,
                              mr_passage_hit *out, int *n, mr_error *err);

/* Stores the number of passages in the index in *count. */
mr_status mr_retriever_count(mr_retriever *retriever, int64_t *count, mr_error *err);

/* Looks up the passage with the given id; MR_ERR_NOT_FOUND when there is
 * none. The hit's score is 0. */
mr_status mr_retriever_get(mr_retriever *retriever, const char *id, mr_passage_hit *out,
                           mr_error *err);

/*
 * Turns a natural-language query into an FTS5 MATCH expression that
 * cannot be a syntax error. The query is split into terms at every ASCII
 * character that is not a letter or digit, so multi-byte UTF-8 characters
 * stay inside terms. English stopwords are dropped unless every term is
 * one. Repeated terms are dropped, ignoring ASCII case. The first
 * MR_RETRIEVER_MAX_TERMS terms are kept, each in double quotes, joined
 * with " OR ". Stores the new string (free it with free()) in *expression
 * and the number of terms in *n_terms. With no terms the expression is "".
 */
mr_status mr_retriever_match_expression(const char *query, char **expression, int *n_terms,
                                        mr_error *err);

/* ------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------ */

/*
 * Returns the share of the n_gold gold titles that occur among the first
 * k of the n_retrieved retrieved titles (exact byte comparison). Repeated
 * gold titles count once. Returns NaN when n_gold is 0.
 */
double mr_retrieval_recall_at_k(const char *const *retrieved, int n_retrieved,
                                const char *const *gold, int n_gold, int k);

/* ------------------------------------------------------------------------
 * Dense vectors
 *
 * An index may hold one float32 vector per passage for each of several
 * embedding models, in the tables embedding_models and embeddings of the
 * same database (docs/retrieval.md shows the layout). A model is known by
 * the SHA-256 of its GGUF file. Vectors of another model are kept apart,
 * so embedding with a second model adds a second set.
 * ------------------------------------------------------------------------ */

/* Length of a SHA-256 digest in hex digits, without the NUL. */
#define MR_EMBEDDING_SHA256_LENGTH 64

/* Default tokens per passage of mr_passage_index_embed(). */
#define MR_EMBEDDING_DEFAULT_MAX_TOKENS 256

/* The embedding model of a set of vectors. */
typedef struct mr_embedding_model {
    char name[256];                               /* file name, for messages */
    char sha256[MR_EMBEDDING_SHA256_LENGTH + 1];  /* of the model file, lowercase hex */
    int dim;                                      /* vector length */
    int max_tokens;                               /* tokens kept per text */
    bool normalized;                              /* vectors have L2 norm 1 */
} mr_embedding_model;

/*
 * Stores the vectors [n, model->dim] of the passages ids[0..n-1] in the
 * index at db_path, replacing any that this model already has for them.
 * The model is registered on first use. A model already registered with
 * another dim, max_tokens or normalized gives MR_ERR_INVALID_ARGUMENT
 * naming both values. An id not in the index gives MR_ERR_NOT_FOUND, and
 * a non-finite value MR_ERR_NUMERIC. Nothing is stored on error.
 */
mr_status mr_passage_vectors_store(const char *db_path, const mr_embedding_model *model,
                                   const char *const *ids, const float *vectors, int n,
                                   mr_error *err);

/* Counts of an embedding run so far. */
typedef struct mr_passage_embed_stats {
    int64_t total;    /* passages in the index */
    int64_t existing; /* passages that had a vector of this model at the start */
    int64_t embedded; /* passages embedded by this run */
    int64_t tokens;   /* tokens run through the model by this run */
    double seconds;   /* time since the run started */
} mr_passage_embed_stats;

/* Receives the counts during an embedding run. */
typedef void (*mr_passage_embed_progress)(const mr_passage_embed_stats *stats,
                                          void *user_data);

/* Settings of mr_passage_index_embed(). */
typedef struct mr_passage_embed_options {
    int batch_size;          /* passages per forward pass and transaction (default 64) */
    int max_tokens;          /* tokens per passage, BOS included (default 256) */
    double progress_seconds; /* call progress at most this often (default 10) and at the end */
    mr_passage_embed_progress progress; /* may be NULL */
    void *progress_user_data;
} mr_passage_embed_options;

/* Fills options with the defaults above. */
void mr_passage_embed_options_default(mr_passage_embed_options *options);

/*
 * Embeds every passage of the index at db_path that has no vector of the
 * GGUF model at model_path yet, and stores the vectors. A passage's text
 * is its title, a newline and its text ("text" alone when the title is
 * empty), cut to max_tokens tokens. Vectors are mean-pooled final hidden
 * states, L2-normalised (mr_llama_embed()). Each batch is committed on its
 * own, so an interrupted run keeps what it finished and a rerun embeds
 * only the rest. A model whose vectors were made with another max_tokens
 * gives MR_ERR_INVALID_ARGUMENT naming both values. options and stats may
 * be NULL.
 */
mr_status mr_passage_index_embed(const char *db_path, const char *model_path,
                                 const mr_passage_embed_options *options,
                                 mr_passage_embed_stats *stats, mr_error *err);

/*
 * Lists the embedding models whose vectors the index at db_path holds,
 * writing up to capacity of them to out and the number of models in
 * *count. A database without vectors gives *count = 0.
 */
mr_status mr_passage_index_models(const char *db_path, mr_embedding_model *out, int capacity,
                                  int *count, mr_error *err);

/* ------------------------------------------------------------------------
 * Dense and hybrid search
 *
 * Dense search ranks every passage by the inner product of its vector
 * with the query's vector. The index stores L2-normalised vectors, so the
 * score is the cosine similarity. Hybrid search fuses the BM25 ranking and
 * the dense ranking with reciprocal-rank fusion (RRF):
 *
 *     score(d) = sum over rankings r that contain d of 1 / (k + rank_r(d))
 *
 * with 1-based ranks, each ranking cut at its first `depth` passages, and
 * k = 60 unless set.
 * ------------------------------------------------------------------------ */

/* Default RRF constant k and per-ranking depth of hybrid search. */
#define MR_RETRIEVER_DEFAULT_RRF_K 60.0
#define MR_RETRIEVER_DEFAULT_RRF_DEPTH 100

/*
 * Loads the GGUF model at model_path (weights and tokenizer) as the query
 * encoder of dense and hybrid search, and the index's vectors of that
 * model into memory. Gives MR_ERR_NOT_FOUND naming both models when the
 * index has vectors of other models only, or none, and MR_ERR_STATE when
 * some passages have no vector of this model yet. Replaces an earlier
 * encoder and its vectors.
 */
mr_status mr_retriever_load_embedder(mr_retriever *retriever, const char *model_path,
                                     mr_error *err);

/*
 * Loads the index's vectors of the model with this SHA-256 (lowercase hex)
 * without an encoder, for mr_retriever_search_vectors(). The same errors
 * as mr_retriever_load_embedder().
 */
mr_status mr_retriever_load_vectors(mr_retriever *retriever, const char *sha256,
                                    mr_error *err);

/* Stores the model of the loaded vectors in *model; MR_ERR_STATE when none
 * are loaded. */
mr_status mr_retriever_embedding_model(mr_retriever *retriever, mr_embedding_model *model,
                                       mr_error *err);

/*
 * Sets the RRF constant k (finite, >= 0) and the depth at which hybrid
 * search cuts each ranking (in [1, MR_RETRIEVER_MAX_K]; a search with a
 * larger k uses k).
 */
mr_status mr_retriever_set_rrf(mr_retriever *retriever, double k, int depth, mr_error *err);

/*
 * Ranks the passages by the inner product of their vectors with each of
 * the query vectors queries [n_queries, dim]. Query q's hits go to
 * out[q * k ..], best first, and their number to counts[q]. Ties are broken by insertion order. Excluded
 * ids are never returned. Needs loaded vectors (MR_ERR_STATE otherwise);
 * a non-finite query value gives MR_ERR_NUMERIC.
 */
mr_status mr_retriever_search_vectors(mr_retriever *retriever, const float *queries,
                                      int n_queries, int k, const char *const *exclude_ids,
                                      int n_exclude, mr_passage_hit *out, int *counts,
                                      mr_error *err);

/*
 * Runs mr_retriever_search() for n_queries queries in the current mode:
 * query q's hits go to out[q * k ..] and their number to counts[q]. Dense
 * and hybrid search embed the queries in one pass and score them in one
 * product, so a batch is faster than single calls. On error no hits are
 * left to free.
 */
mr_status mr_retriever_search_batch(mr_retriever *retriever, const char *const *queries,
                                    int n_queries, int k, const char *const *exclude_ids,
                                    int n_exclude, mr_passage_hit *out, int *counts,
                                    mr_error *err);

/*
 * Fuses n_rankings rankings of ids (ranking r has lengths[r] ids, best
 * first) with reciprocal-rank fusion: each id scores the sum, over the
 * rankings in order, of 1 / (k + rank) at its first (1-based) rank there.
 * Writes the best min(capacity, distinct ids) ids to out_ids with their
 * scores in out_scores, highest score first and ties by smaller id, and
 * the count to *n. k must be finite and >= 0.
 */
mr_status mr_retrieval_fuse_rrf(const int64_t *const *rankings, const int *lengths,
                                int n_rankings, double k, int64_t *out_ids, double *out_scores,
                                int capacity, int *n, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_RETRIEVER_H */
