/*
 * Dense and hybrid retrieval: exact ranking of hand-made vectors,
 * reciprocal-rank fusion of hand-made rankings, embedding an index with
 * stories260K and resuming it, the error for a query model that did not
 * embed the index, and exclusion in every mode.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "multiround/llama.h"
#include "multiround/retriever.h"
#include "test.h"

#define MODEL_PATH "data/lm/stories260K.gguf"
#define MODEL_SHA256 "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"

#define CHECK_CONTAINS(text, part)                                              \
    do {                                                                        \
        if (strstr((text), (part)) == NULL) {                                   \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'",      \
                         (text), (part));                                       \
        }                                                                       \
    } while (0)

/* Six passages for hand-made vectors of dim 3. */
static const char vector_corpus[] =
    "{\"id\": 1, \"text\": \"apple one\"}\n"
    "{\"id\": 2, \"text\": \"apple two\"}\n"
    "{\"id\": 3, \"text\": \"banana\"}\n"
    "{\"id\": 4, \"text\": \"cherry\"}\n"
    "{\"id\": 5, \"text\": \"apple banana\"}\n"
    "{\"id\": 6, \"text\": \"date\"}\n";

/*
 * Inner products with (1, 0, 0) are 1, 0.5, 0, 0.75, 0.5, -1, and with
 * (0, 1, 0) they are 0, 0.5, 1, 0, 0, 0: every value is exact in float.
 */
static const float hand_vectors[6 * 3] = {
    1.0f, 0.0f, 0.0f,  0.5f, 0.5f, 0.0f,  0.0f, 1.0f, 0.0f,
    0.75f, 0.0f, 0.25f, 0.5f, 0.0f, 0.5f, -1.0f, 0.0f, 0.0f,
};

/* Six short stories for the real model. */
static const char story_corpus[] =
    "{\"id\": \"lily\", \"title\": \"Lily\", \"text\": \"Lily was a little girl who loved to "
    "play in the park.\"}\n"
    "{\"id\": \"cat\", \"title\": \"Cat\", \"text\": \"The cat sat on the mat and slept in "
    "the sun.\"}\n"
    "{\"id\": \"ball\", \"title\": \"Ball\", \"text\": \"Tom had a big red ball that he liked "
    "to throw.\"}\n"
    "{\"id\": \"tree\", \"title\": \"Tree\", \"text\": \"A tall tree grew next to the "
    "river.\"}\n"
    "{\"id\": \"cake\", \"title\": \"Cake\", \"text\": \"Mom baked a sweet cake for the "
    "party.\"}\n"
    "{\"id\": \"dog\", \"title\": \"Dog\", \"text\": \"The dog ran after the ball in the "
    "park.\"}\n";

static const char *const story_ids[6] = {"lily", "cat", "ball", "tree", "cake", "dog"};

static char folder[256];
static char vector_db[512];
static char story_db[512];
static char other_model[512];

/* Writes text to folder/name and indexes it into db_path. */
static int build_index(const char *name, const char *text, const char *db_path) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    FILE *file = fopen(path, "wb");
    if (file == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fputs(text, file);
    fclose(file);
    mr_error err;
    if (mr_passage_index_build(path, db_path, NULL, NULL, &err) != MR_OK) {
        fprintf(stderr, "indexing %s failed: %s\n", path, err.message);
        return 1;
    }
    return 0;
}

/* Describes the hand-made model of dim 3. */
static mr_embedding_model hand_model(void) {
    mr_embedding_model model;
    memset(&model, 0, sizeof model);
    snprintf(model.name, sizeof model.name, "hand-made");
    memset(model.sha256, 'a', MR_EMBEDDING_SHA256_LENGTH);
    model.sha256[MR_EMBEDDING_SHA256_LENGTH] = '\0';
    model.dim = 3;
    model.max_tokens = 1;
    model.normalized = false;
    return model;
}

static void vectors_store_checks_input(void) {
    mr_embedding_model model = hand_model();
    const char *unknown[1] = {"99"};
    mr_error err;
    CHECK_STATUS(mr_passage_vectors_store(vector_db, &model, unknown, hand_vectors, 1, &err),
                 MR_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "'99'");

    const char *one[1] = {"1"};
    float bad[3] = {0.0f, NAN, 1.0f};
    CHECK_STATUS(mr_passage_vectors_store(vector_db, &model, one, bad, 1, &err),
                 MR_ERR_NUMERIC);

    mr_embedding_model short_sha = model;
    short_sha.sha256[10] = '\0';
    CHECK_STATUS(mr_passage_vectors_store(vector_db, &short_sha, one, hand_vectors, 1, &err),
                 MR_ERR_INVALID_ARGUMENT);
}

static void vectors_rank_in_exact_order(void) {
    mr_embedding_model model = hand_model();
    const char *ids[6] = {"1", "2", "3", "4", "5", "6"};
    mr_error err;
    CHECK_STATUS(mr_passage_vectors_store(vector_db, &model, ids, hand_vectors, 6, &err), MR_OK);

    /* The same model with another dim is rejected, naming both. */
    mr_embedding_model wider = model;
    wider.dim = 4;
    float four[4] = {1, 2, 3, 4};
    CHECK_STATUS(mr_passage_vectors_store(vector_db, &wider, ids, four, 1, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "dim 3");
    CHECK_CONTAINS(err.message, "dim 4");

    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(vector_db, &retriever, &err), MR_OK);
    CHECK_STATUS(mr_retriever_load_vectors(retriever, model.sha256, &err), MR_OK);

    /* Two queries in one product; ties (0.5 and 0) go by insertion order. */
    const float queries[2 * 3] = {1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f};
    mr_passage_hit hits[2 * 6];
    int counts[2] = {-1, -1};
    CHECK_STATUS(mr_retriever_search_vectors(retriever, queries, 2, 6, NULL, 0, hits, counts,
                                             &err),
                 MR_OK);
    CHECK_INT_EQ(counts[0], 6);
    CHECK_INT_EQ(counts[1], 6);
    const char *expected_first[6] = {"1", "4", "2", "5", "3", "6"};
    const double first_scores[6] = {1.0, 0.75, 0.5, 0.5, 0.0, -1.0};
    const char *expected_second[6] = {"3", "2", "1", "4", "5", "6"};
    const double second_scores[6] = {1.0, 0.5, 0.0, 0.0, 0.0, 0.0};
    for (int i = 0; i < 6 && counts[0] == 6 && counts[1] == 6; i++) {
        CHECK_STR_EQ(hits[i].id, expected_first[i]);
        CHECK(hits[i].score == first_scores[i]);
        CHECK_STR_EQ(hits[6 + i].id, expected_second[i]);
        CHECK(hits[6 + i].score == second_scores[i]);
    }
    mr_passage_hits_free(hits, counts[0]);
    mr_passage_hits_free(hits + 6, counts[1]);

    /* Exclusion skips passages and k cuts the list. */
    const char *exclude[2] = {"4", "2"};
    CHECK_STATUS(mr_retriever_search_vectors(retriever, queries, 1, 3, exclude, 2, hits, counts,
                                             &err),
                 MR_OK);
    CHECK_INT_EQ(counts[0], 3);
    if (counts[0] == 3) {
        CHECK_STR_EQ(hits[0].id, "1");
        CHECK_STR_EQ(hits[1].id, "5");
        CHECK_STR_EQ(hits[2].id, "3");
    }
    mr_passage_hits_free(hits, counts[0]);

    float infinite[3] = {INFINITY, 0.0f, 0.0f};
    CHECK_STATUS(mr_retriever_search_vectors(retriever, infinite, 1, 3, NULL, 0, hits, counts,
                                             &err),
                 MR_ERR_NUMERIC);
    mr_retriever_close(retriever);
}

static void rrf_scores_are_exact(void) {
    const int64_t a[3] = {10, 20, 30};
    const int64_t b[3] = {30, 10, 40};
    const int64_t *rankings[3] = {a, b, NULL};
    const int lengths[3] = {3, 3, 0};
    int64_t ids[8];
    double scores[8];
    int n = -1;
    mr_error err;
    CHECK_STATUS(mr_retrieval_fuse_rrf(rankings, lengths, 3, 60.0, ids, scores, 8, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 4);
    if (n == 4) {
        CHECK_INT_EQ(ids[0], 10);
        CHECK(scores[0] == 1.0 / 61.0 + 1.0 / 62.0);
        CHECK_INT_EQ(ids[1], 30);
        CHECK(scores[1] == 1.0 / 63.0 + 1.0 / 61.0);
        CHECK_INT_EQ(ids[2], 20);
        CHECK(scores[2] == 1.0 / 62.0);
        CHECK_INT_EQ(ids[3], 40);
        CHECK(scores[3] == 1.0 / 63.0);
    }

    /* Capacity cuts the list after sorting. */
    CHECK_STATUS(mr_retrieval_fuse_rrf(rankings, lengths, 2, 60.0, ids, scores, 2, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 2);
    CHECK_INT_EQ(ids[1], 30);
}

static void rrf_ties_and_repeats(void) {
    /* With k = 0 both ids score 1 + 1/2 = 1.5; the smaller id comes first. */
    const int64_t a[2] = {7, 3};
    const int64_t b[2] = {3, 7};
    const int64_t *rankings[2] = {a, b};
    const int lengths[2] = {2, 2};
    int64_t ids[4];
    double scores[4];
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_retrieval_fuse_rrf(rankings, lengths, 2, 0.0, ids, scores, 4, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 2);
    CHECK_INT_EQ(ids[0], 3);
    CHECK(scores[0] == 1.5);
    CHECK_INT_EQ(ids[1], 7);
    CHECK(scores[1] == 1.5);

    /* An id repeated in one ranking counts once, at its first rank. */
    const int64_t repeated[3] = {5, 5, 6};
    const int64_t *single[1] = {repeated};
    const int single_length[1] = {3};
    CHECK_STATUS(mr_retrieval_fuse_rrf(single, single_length, 1, 60.0, ids, scores, 4, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 2);
    CHECK(scores[0] == 1.0 / 61.0);
    CHECK(scores[1] == 1.0 / 63.0);

    CHECK_STATUS(mr_retrieval_fuse_rrf(single, single_length, 1, -1.0, ids, scores, 4, &n, &err),
                 MR_ERR_INVALID_ARGUMENT);
}

/* Reads the stored vector blobs of a model in rowid order into a new
 * buffer of *bytes bytes. */
static unsigned char *read_blobs(const char *sha256, size_t *bytes) {
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    unsigned char *blobs = NULL;
    *bytes = 0;
    sqlite3_open_v2(story_db, &db, SQLITE_OPEN_READONLY, NULL);
    sqlite3_prepare_v2(db,
                       "SELECT vector FROM embeddings JOIN embedding_models USING (model_id)"
                       " WHERE sha256 = ?1 ORDER BY passage_rowid",
                       -1, &stmt, NULL);
    sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_STATIC);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        size_t size = (size_t)sqlite3_column_bytes(stmt, 0);
        unsigned char *grown = realloc(blobs, *bytes + size);
        if (grown == NULL) {
            break;
        }
        blobs = grown;
        memcpy(blobs + *bytes, sqlite3_column_blob(stmt, 0), size);
        *bytes += size;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return blobs;
}

static void embed_stores_every_passage(void) {
    mr_passage_embed_stats stats;
    mr_error err;
    CHECK_STATUS(mr_passage_index_embed(story_db, MODEL_PATH, NULL, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.total, 6);
    CHECK_INT_EQ(stats.existing, 0);
    CHECK_INT_EQ(stats.embedded, 6);
    CHECK(stats.tokens > 6 * 5);

    mr_embedding_model models[4];
    int count = 0;
    CHECK_STATUS(mr_passage_index_models(story_db, models, 4, &count, &err), MR_OK);
    CHECK_INT_EQ(count, 1);
    CHECK_STR_EQ(models[0].name, "stories260K.gguf");
    CHECK_STR_EQ(models[0].sha256, MODEL_SHA256);
    CHECK_INT_EQ(models[0].dim, 64);
    CHECK_INT_EQ(models[0].max_tokens, MR_EMBEDDING_DEFAULT_MAX_TOKENS);
    CHECK(models[0].normalized);
}

static void embed_resumes_missing_vectors(void) {
    size_t before_bytes = 0, after_bytes = 0;
    unsigned char *before = read_blobs(MODEL_SHA256, &before_bytes);
    CHECK_INT_EQ(before_bytes, 6 * 64 * sizeof(float));

    /* A rerun finds nothing to do. */
    mr_passage_embed_stats stats;
    mr_error err;
    CHECK_STATUS(mr_passage_index_embed(story_db, MODEL_PATH, NULL, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.existing, 6);
    CHECK_INT_EQ(stats.embedded, 0);

    /* As after an interrupted run, two passages lack vectors. A batch of 1
     * embeds each alone, and the vectors come back bit for bit. */
    sqlite3 *db = NULL;
    sqlite3_open_v2(story_db, &db, SQLITE_OPEN_READWRITE, NULL);
    CHECK_INT_EQ(sqlite3_exec(db, "DELETE FROM embeddings WHERE passage_rowid IN (2, 5)", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    mr_passage_embed_options options;
    mr_passage_embed_options_default(&options);
    options.batch_size = 1;
    CHECK_STATUS(mr_passage_index_embed(story_db, MODEL_PATH, &options, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.existing, 4);
    CHECK_INT_EQ(stats.embedded, 2);
    unsigned char *after = read_blobs(MODEL_SHA256, &after_bytes);
    CHECK_INT_EQ(after_bytes, before_bytes);
    CHECK(before != NULL && after != NULL && memcmp(before, after, before_bytes) == 0);
    free(before);
    free(after);

    /* Other settings for the same model are rejected, naming both. */
    options.max_tokens = 32;
    CHECK_STATUS(mr_passage_index_embed(story_db, MODEL_PATH, &options, &stats, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "max_tokens 256");
    CHECK_CONTAINS(err.message, "max_tokens 32");
}

static void dense_needs_loaded_vectors(void) {
    mr_retriever *retriever = NULL;
    mr_error err;
    CHECK_STATUS(mr_retriever_open(story_db, &retriever, &err), MR_OK);
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_DENSE, &err), MR_ERR_STATE);
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_HYBRID, &err), MR_ERR_STATE);

    /* Vectors without an encoder serve vector queries but not text. */
    CHECK_STATUS(mr_retriever_load_vectors(retriever, MODEL_SHA256, &err), MR_OK);
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_DENSE, &err), MR_OK);
    mr_passage_hit hits[2];
    int n = 0;
    CHECK_STATUS(mr_retriever_search(retriever, "cat", 2, NULL, 0, hits, &n, &err),
                 MR_ERR_STATE);
    mr_retriever_close(retriever);
}

/* Opens the story index with the real model as encoder in mode. */
static mr_retriever *open_story_retriever(mr_retriever_mode mode) {
    mr_retriever *retriever = NULL;
    mr_error err;
    if (mr_retriever_open(story_db, &retriever, &err) != MR_OK ||
        mr_retriever_load_embedder(retriever, MODEL_PATH, &err) != MR_OK ||
        mr_retriever_set_mode(retriever, mode, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "opening %s failed: %s", story_db, err.message);
        mr_retriever_close(retriever);
        return NULL;
    }
    return retriever;
}

static void dense_query_finds_its_own_passage(void) {
    mr_retriever *retriever = open_story_retriever(MR_RETRIEVER_DENSE);
    if (retriever == NULL) {
        return;
    }
    /* The query is the embedded text of "cat" itself, so its unit vector
     * is that passage's and the cosine is 1 up to rounding. */
    mr_passage_hit hits[3];
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_retriever_search(retriever, "Cat\nThe cat sat on the mat and slept in the sun.",
                                     3, NULL, 0, hits, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 3);
    if (n == 3) {
        CHECK_STR_EQ(hits[0].id, "cat");
        CHECK_NEAR(hits[0].score, 1.0, 1e-6);
        CHECK(hits[1].score <= hits[0].score && hits[2].score <= hits[1].score);
    }
    mr_passage_hits_free(hits, n);
    mr_retriever_close(retriever);
}

static void dense_batch_matches_single_queries(void) {
    mr_retriever *retriever = open_story_retriever(MR_RETRIEVER_DENSE);
    if (retriever == NULL) {
        return;
    }
    const char *queries[3] = {"a girl in the park", "a sweet cake", "the river"};
    mr_passage_hit batch[3 * 6], single[6];
    int counts[3] = {0, 0, 0};
    mr_error err;
    CHECK_STATUS(mr_retriever_search_batch(retriever, queries, 3, 6, NULL, 0, batch, counts,
                                           &err),
                 MR_OK);
    for (int q = 0; q < 3; q++) {
        int n = 0;
        CHECK_STATUS(mr_retriever_search(retriever, queries[q], 6, NULL, 0, single, &n, &err),
                     MR_OK);
        CHECK_INT_EQ(counts[q], 6);
        CHECK_INT_EQ(n, 6);
        /* The query vectors are bit-identical; the score products may
         * round differently for 1 and 3 query rows. */
        for (int i = 0; i < n && i < counts[q]; i++) {
            CHECK_STR_EQ(batch[q * 6 + i].id, single[i].id);
            CHECK_NEAR(batch[q * 6 + i].score, single[i].score, 1e-6);
        }
        mr_passage_hits_free(single, n);
        mr_passage_hits_free(batch + q * 6, counts[q]);
    }
    mr_retriever_close(retriever);
}

/* Returns the 1-based insertion position (the rowid) of a story id. */
static int64_t story_rowid(const char *id) {
    for (int i = 0; i < 6; i++) {
        if (strcmp(story_ids[i], id) == 0) {
            return i + 1;
        }
    }
    return -1;
}

/* Searches query with k = 6 in mode and stores the hits' rowids. */
static int ranking_of(mr_retriever_mode mode, const char *query, int64_t *rowids) {
    mr_retriever *retriever = open_story_retriever(mode);
    if (retriever == NULL) {
        return 0;
    }
    mr_passage_hit hits[6];
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_retriever_search(retriever, query, 6, NULL, 0, hits, &n, &err), MR_OK);
    for (int i = 0; i < n; i++) {
        rowids[i] = story_rowid(hits[i].id);
    }
    mr_passage_hits_free(hits, n);
    mr_retriever_close(retriever);
    return n;
}

static void hybrid_scores_follow_rrf(void) {
    const char *query = "the dog and the ball in the park";
    int64_t bm25[6], dense[6];
    int n_bm25 = ranking_of(MR_RETRIEVER_BM25, query, bm25);
    int n_dense = ranking_of(MR_RETRIEVER_DENSE, query, dense);
    CHECK(n_bm25 >= 3); /* dog, ball and lily share words with the query */
    CHECK_INT_EQ(n_dense, 6);

    /* Hybrid with k = 10 must equal RRF of the two rankings, BM25 first. */
    const int64_t *rankings[2] = {bm25, dense};
    int lengths[2] = {n_bm25, n_dense};
    int64_t expected_ids[6];
    double expected_scores[6];
    int n_expected = 0;
    mr_error err;
    CHECK_STATUS(mr_retrieval_fuse_rrf(rankings, lengths, 2, 10.0, expected_ids,
                                       expected_scores, 6, &n_expected, &err),
                 MR_OK);

    mr_retriever *retriever = open_story_retriever(MR_RETRIEVER_HYBRID);
    if (retriever == NULL) {
        return;
    }
    CHECK_STATUS(mr_retriever_set_rrf(retriever, 10.0, 100, &err), MR_OK);
    mr_passage_hit hits[6];
    int n = 0;
    CHECK_STATUS(mr_retriever_search(retriever, query, 6, NULL, 0, hits, &n, &err), MR_OK);
    CHECK_INT_EQ(n, n_expected);
    for (int i = 0; i < n && i < n_expected; i++) {
        CHECK_INT_EQ(story_rowid(hits[i].id), expected_ids[i]);
        CHECK(hits[i].score == expected_scores[i]);
    }
    mr_passage_hits_free(hits, n);
    CHECK_STATUS(mr_retriever_set_rrf(retriever, -1.0, 100, &err), MR_ERR_INVALID_ARGUMENT);
    mr_retriever_close(retriever);
}

static void exclude_works_in_every_mode(void) {
    const mr_retriever_mode modes[3] = {MR_RETRIEVER_BM25, MR_RETRIEVER_DENSE,
                                        MR_RETRIEVER_HYBRID};
    /* BM25 matches dog, ball and lily ("park", "ball"); dense and hybrid
     * rank all six. */
    const int expected_counts[3] = {1, 4, 4};
    const char *exclude[2] = {"dog", "ball"};
    for (int m = 0; m < 3; m++) {
        mr_retriever *retriever = open_story_retriever(modes[m]);
        if (retriever == NULL) {
            continue;
        }
        mr_passage_hit hits[6];
        int n = 0;
        mr_error err;
        CHECK_STATUS(mr_retriever_search(retriever, "the ball in the park", 6, exclude, 2, hits,
                                         &n, &err),
                     MR_OK);
        CHECK_INT_EQ(n, expected_counts[m]);
        for (int i = 0; i < n; i++) {
            CHECK(strcmp(hits[i].id, "dog") != 0);
            CHECK(strcmp(hits[i].id, "ball") != 0);
        }
        mr_passage_hits_free(hits, n);
        mr_retriever_close(retriever);
    }
}

static void other_model_is_rejected_then_stored_apart(void) {
    /* An F16 copy of the model is another file, so another identity. */
    mr_qtype f16 = MR_QTYPE_F16;
    mr_error err;
    CHECK_STATUS(mr_llama_convert(MODEL_PATH, other_model, &f16, &err), MR_OK);

    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(story_db, &retriever, &err), MR_OK);
    CHECK_STATUS(mr_retriever_load_embedder(retriever, other_model, &err), MR_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "other.gguf");
    CHECK_CONTAINS(err.message, "stories260K.gguf");
    mr_retriever_close(retriever);

    /* Embedding with it adds a second set and leaves the first alone. */
    mr_passage_embed_stats stats;
    CHECK_STATUS(mr_passage_index_embed(story_db, other_model, NULL, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.existing, 0);
    CHECK_INT_EQ(stats.embedded, 6);
    mr_embedding_model models[4];
    int count = 0;
    CHECK_STATUS(mr_passage_index_models(story_db, models, 4, &count, &err), MR_OK);
    CHECK_INT_EQ(count, 2);
    CHECK_STR_EQ(models[1].name, "other.gguf");
    CHECK_STATUS(mr_retriever_open(story_db, &retriever, &err), MR_OK);
    CHECK_STATUS(mr_retriever_load_embedder(retriever, other_model, &err), MR_OK);
    mr_retriever_close(retriever);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_dense_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", folder, strerror(errno));
        return 1;
    }
    snprintf(vector_db, sizeof vector_db, "%s/vectors.db", folder);
    snprintf(story_db, sizeof story_db, "%s/stories.db", folder);
    snprintf(other_model, sizeof other_model, "%s/other.gguf", folder);
    if (build_index("vectors.jsonl", vector_corpus, vector_db) != 0 ||
        build_index("stories.jsonl", story_corpus, story_db) != 0) {
        return 1;
    }

    MR_RUN(vectors_store_checks_input);
    MR_RUN(vectors_rank_in_exact_order);
    MR_RUN(rrf_scores_are_exact);
    MR_RUN(rrf_ties_and_repeats);
    MR_RUN(embed_stores_every_passage);
    MR_RUN(embed_resumes_missing_vectors);
    MR_RUN(dense_needs_loaded_vectors);
    MR_RUN(dense_query_finds_its_own_passage);
    MR_RUN(dense_batch_matches_single_queries);
    MR_RUN(hybrid_scores_follow_rrf);
    MR_RUN(exclude_works_in_every_mode);
    MR_RUN(other_model_is_rejected_then_stored_apart);

    const char *files[] = {"vectors.jsonl", "vectors.db", "stories.jsonl", "stories.db",
                           "other.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", folder, files[i]);
        remove(path);
    }
    remove(folder);
    return mr_test_finish();
}
