/*
 * BM25 search on a small hand-made corpus: the ranking and scores match
 * the BM25 formula that FTS5 documents, exclusion works, FTS5 syntax in
 * a query is harmless, and one handle serves several threads.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/retriever.h"
#include "test.h"

/*
 * Ten passages. Token counts (title plus text) are in the comments; the
 * Porter stemmer changes no count. "apple" is in 3 passages, "banana" in
 * 2, "mango" in 2 (twice in "ten": title and text).
 */
static const char corpus[] =
    "{\"id\": 1, \"title\": \"\", \"text\": \"apple banana\"}\n"            /* 2 */
    "{\"id\": \"two\", \"text\": \"apple apple cherry\"}\n"                 /* 3 */
    "{\"id\": 3, \"text\": \"apple cherry cherry cherry cherry cherry cherry\"}\n" /* 7 */
    "{\"id\": 4, \"text\": \"banana date\"}\n"                              /* 2 */
    "{\"id\": 5, \"text\": \"date elder\"}\n"                               /* 2 */
    "{\"id\": 6, \"text\": \"elder fig\"}\n"                                /* 2 */
    "{\"id\": 7, \"text\": \"fig grape\"}\n"                                /* 2 */
    "{\"id\": 8, \"text\": \"grape kiwi\"}\n"                               /* 2 */
    "{\"id\": 9, \"text\": \"kiwi mango\"}\n"                               /* 2 */
    "{\"id\": \"ten\", \"title\": \"Mango\", \"text\": \"lemon mango\"}\n"; /* 3 */

#define N_PASSAGES 10
#define TOTAL_TOKENS 27.0

static char folder[256];
static char db_path[512];
static mr_retriever *retriever;

/*
 * BM25 as FTS5 computes it (SQLite's fts5_aux.c): k1 = 1.2, b = 0.75,
 * IDF = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6, and the length of
 * a passage counts the tokens of all its columns.
 */
static double bm25_term(int tf, int passage_tokens, int passages_with_term) {
    const double k1 = 1.2, b = 0.75;
    double idf = log((N_PASSAGES - passages_with_term + 0.5) / (passages_with_term + 0.5));
    if (idf <= 0) {
        idf = 1e-6;
    }
    double average = TOTAL_TOKENS / N_PASSAGES;
    double length_norm = 1.0 - b + b * passage_tokens / average;
    return idf * tf * (k1 + 1.0) / (tf + k1 * length_norm);
}

/* Searches with no exclusions; the caller frees the hits. */
static int search(const char *query, int k, mr_passage_hit *hits) {
    int n = -1;
    mr_error err;
    mr_status status = mr_retriever_search(retriever, query, k, NULL, 0, hits, &n, &err);
    if (status != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "search '%s' failed: %s", query, err.message);
        return 0;
    }
    return n;
}

static void term_frequency_and_length_decide(void) {
    /* "two" has apple twice in 3 tokens, 1 once in 2 tokens, 3 once in 7:
     * frequency puts "two" first and length puts 1 before 3. */
    double expected_two = bm25_term(2, 3, 3);
    double expected_1 = bm25_term(1, 2, 3);
    double expected_3 = bm25_term(1, 7, 3);
    CHECK(expected_two > expected_1);
    CHECK(expected_1 > expected_3);

    mr_passage_hit hits[10];
    int n = search("apple", 10, hits);
    CHECK_INT_EQ(n, 3);
    if (n == 3) {
        CHECK_STR_EQ(hits[0].id, "two");
        CHECK_STR_EQ(hits[1].id, "1");
        CHECK_STR_EQ(hits[2].id, "3");
        CHECK_NEAR(hits[0].score, expected_two, 1e-9);
        CHECK_NEAR(hits[1].score, expected_1, 1e-9);
        CHECK_NEAR(hits[2].score, expected_3, 1e-9);
    }
    mr_passage_hits_free(hits, n);
}

static void scores_add_over_terms(void) {
    /* Passage 1 contains both terms. 4 contains banana, and "two" and 3
     * contain apple. */
    double expected_1 = bm25_term(1, 2, 3) + bm25_term(1, 2, 2);
    double expected_4 = bm25_term(1, 2, 2);
    mr_passage_hit hits[10];
    int n = search("Apple BANANA", 10, hits);
    CHECK_INT_EQ(n, 4);
    if (n == 4) {
        CHECK_STR_EQ(hits[0].id, "1");
        CHECK_STR_EQ(hits[1].id, "4");
        CHECK_STR_EQ(hits[2].id, "two");
        CHECK_STR_EQ(hits[3].id, "3");
        CHECK_NEAR(hits[0].score, expected_1, 1e-9);
        CHECK_NEAR(hits[1].score, expected_4, 1e-9);
    }
    mr_passage_hits_free(hits, n);
}

static void title_counts_as_text(void) {
    /* "ten" has mango in its title and text (tf 2, 3 tokens); 9 has it
     * once in 2 tokens. */
    mr_passage_hit hits[10];
    int n = search("mango", 10, hits);
    CHECK_INT_EQ(n, 2);
    if (n == 2) {
        CHECK_STR_EQ(hits[0].id, "ten");
        CHECK_STR_EQ(hits[0].title, "Mango");
        CHECK_STR_EQ(hits[0].text, "lemon mango");
        CHECK_NEAR(hits[0].score, bm25_term(2, 3, 2), 1e-9);
        CHECK_NEAR(hits[1].score, bm25_term(1, 2, 2), 1e-9);
    }
    mr_passage_hits_free(hits, n);
}

static void k_limits_hits(void) {
    mr_passage_hit hits[2];
    int n = search("apple", 2, hits);
    CHECK_INT_EQ(n, 2);
    if (n == 2) {
        CHECK_STR_EQ(hits[0].id, "two");
        CHECK_STR_EQ(hits[1].id, "1");
    }
    mr_passage_hits_free(hits, n);

    mr_error err;
    CHECK_STATUS(mr_retriever_search(retriever, "apple", 0, NULL, 0, hits, &n, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_retriever_search(retriever, "apple", MR_RETRIEVER_MAX_K + 1, NULL, 0, hits,
                                     &n, &err),
                 MR_ERR_INVALID_ARGUMENT);
}

static void exclude_removes_ids(void) {
    const char *exclude[] = {"two", "3", "no-such-id"};
    mr_passage_hit hits[10];
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_retriever_search(retriever, "apple cherry", 10, exclude, 3, hits, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        CHECK_STR_EQ(hits[0].id, "1");
        CHECK(hits[0].id_is_integer);
    }
    mr_passage_hits_free(hits, n);

    /* An excluded passage leaves the scores of the others unchanged. */
    CHECK_STATUS(mr_retriever_search(retriever, "apple", 10, exclude, 1, hits, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 2);
    if (n == 2) {
        CHECK_STR_EQ(hits[0].id, "1");
        CHECK_NEAR(hits[0].score, bm25_term(1, 2, 3), 1e-9);
    }
    mr_passage_hits_free(hits, n);
}

static void fts5_syntax_is_harmless(void) {
    /* Each query contains "apple" among FTS5 syntax and must rank exactly
     * as the plain query does. */
    static const char *const with_apple[] = {
        "\"apple",          "apple\"",         "'apple'",           "(apple",
        "apple)",           "apple*",          "^apple",            "-apple",
        "+apple",           "title:apple",     "text : apple",      "{title text}: apple",
        "apple AND",        "OR apple OR",     "NOT apple",         "apple NEAR",
        "NEAR(apple, 2)",   "apple; DROP TABLE passages; --",      "\\apple\\",
        "a\"pple apple",    "apple.",          "apple\t\n",         "[apple]",
        "apple?!",          "rank:apple",      "\"\"apple\"\"",
    };
    mr_passage_hit plain[10];
    int n_plain = search("apple", 10, plain);

    for (size_t i = 0; i < sizeof with_apple / sizeof with_apple[0]; i++) {
        mr_passage_hit hits[10];
        int n = 0;
        mr_error err;
        mr_status status = mr_retriever_search(retriever, with_apple[i], 10, NULL, 0, hits, &n,
                                               &err);
        if (status != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "query '%s' failed: %s", with_apple[i],
                         err.message);
            continue;
        }
        if (n != n_plain) {
            mr_test_fail(__FILE__, __LINE__, "query '%s' gave %d hits, expected %d",
                         with_apple[i], n, n_plain);
        }
        for (int h = 0; h < n && h < n_plain; h++) {
            CHECK_STR_EQ(hits[h].id, plain[h].id);
            CHECK_NEAR(hits[h].score, plain[h].score, 1e-9);
        }
        mr_passage_hits_free(hits, n);
    }
    mr_passage_hits_free(plain, n_plain);

    /* Queries of syntax alone give no hits and no error. */
    static const char *const syntax_only[] = {
        "", "   ", "\"", "\"\"", "*", "^", ":", "-", "()", "AND", "OR", "NOT", "NEAR",
        "NEAR()", "title:", "AND OR NOT", "\xe2\x80\x94", "'", "{}", "+*^:-\"()",
    };
    for (size_t i = 0; i < sizeof syntax_only / sizeof syntax_only[0]; i++) {
        mr_passage_hit hits[10];
        int n = -1;
        mr_error err;
        mr_status status = mr_retriever_search(retriever, syntax_only[i], 10, NULL, 0, hits, &n,
                                               &err);
        if (status != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "query '%s' failed: %s", syntax_only[i],
                         err.message);
            continue;
        }
        if (n != 0) {
            mr_test_fail(__FILE__, __LINE__, "query '%s' gave %d hits, expected 0",
                         syntax_only[i], n);
        }
        mr_passage_hits_free(hits, n);
    }
}

static void match_expression_quotes_terms(void) {
    static const struct {
        const char *query;
        const char *expression;
        int terms;
    } cases[] = {
        {"Who directed \"Jaws\" (1975)?", "\"directed\" OR \"Jaws\" OR \"1975\"", 3},
        {"title:apple* AND NOT banana", "\"title\" OR \"apple\" OR \"NOT\" OR \"banana\"", 4},
        {"apple Apple APPLE apple", "\"apple\"", 1},
        {"The Who", "\"The\" OR \"Who\"", 2},
        {"Ne\xc8\x9bi\xc8\x9b" "escu's father", "\"Ne\xc8\x9bi\xc8\x9b" "escu\" OR \"s\" OR "
                                                "\"father\"", 3},
        {"", "", 0},
        {"-- ()", "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *expression = NULL;
        int terms = -1;
        mr_error err;
        CHECK_STATUS(mr_retriever_match_expression(cases[i].query, &expression, &terms, &err),
                     MR_OK);
        CHECK_STR_EQ(expression, cases[i].expression);
        CHECK_INT_EQ(terms, cases[i].terms);
        free(expression);
    }
}

static void match_expression_caps_terms(void) {
    char query[2048] = "";
    for (int i = 0; i < MR_RETRIEVER_MAX_TERMS + 10; i++) {
        size_t used = strlen(query);
        snprintf(query + used, sizeof query - used, "w%d ", i);
    }
    char *expression = NULL;
    int terms = 0;
    mr_error err;
    CHECK_STATUS(mr_retriever_match_expression(query, &expression, &terms, &err), MR_OK);
    CHECK_INT_EQ(terms, MR_RETRIEVER_MAX_TERMS);
    CHECK(expression != NULL);
    if (expression != NULL) {
        CHECK(strstr(expression, "\"w63\"") != NULL);
        CHECK(strstr(expression, "\"w64\"") == NULL);
    }
    free(expression);
}

static void dense_mode_needs_vectors(void) {
    /* This index has no vectors loaded, so dense and hybrid are refused. */
    mr_error err;
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_DENSE, &err), MR_ERR_STATE);
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_HYBRID, &err), MR_ERR_STATE);
    CHECK_STATUS(mr_retriever_set_mode(retriever, MR_RETRIEVER_BM25, &err), MR_OK);

    /* The failed calls left BM25 search working. */
    mr_passage_hit hits[10];
    int n = search("apple", 10, hits);
    CHECK_INT_EQ(n, 3);
    mr_passage_hits_free(hits, n);
}

/* Runs 200 searches and counts those whose hit count or best hit differ
 * from the expected ones. */
static void *search_repeatedly(void *arg) {
    int *mismatches = arg;
    for (int round = 0; round < 200; round++) {
        mr_passage_hit hits[10];
        int n = 0;
        mr_error err;
        const char *query = round % 2 == 0 ? "apple" : "banana mango";
        if (mr_retriever_search(retriever, query, 10, NULL, 0, hits, &n, &err) != MR_OK) {
            (*mismatches)++;
            continue;
        }
        const char *first = round % 2 == 0 ? "two" : "ten";
        int expected = round % 2 == 0 ? 3 : 4;
        if (n != expected || strcmp(hits[0].id, first) != 0) {
            (*mismatches)++;
        }
        mr_passage_hits_free(hits, n);
    }
    return NULL;
}

static void threads_share_handle(void) {
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    int mismatches[THREADS] = {0};
    for (int t = 0; t < THREADS; t++) {
        CHECK(pthread_create(&threads[t], NULL, search_repeatedly, &mismatches[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK_INT_EQ(mismatches[t], 0);
    }
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_search_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", folder, strerror(errno));
        return 1;
    }
    char corpus_path[512];
    snprintf(corpus_path, sizeof corpus_path, "%s/corpus.jsonl", folder);
    snprintf(db_path, sizeof db_path, "%s/corpus.db", folder);
    FILE *file = fopen(corpus_path, "wb");
    if (file == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", corpus_path, strerror(errno));
        return 1;
    }
    fputs(corpus, file);
    fclose(file);

    mr_error err;
    if (mr_passage_index_build(corpus_path, db_path, NULL, NULL, &err) != MR_OK ||
        mr_retriever_open(db_path, &retriever, &err) != MR_OK) {
        fprintf(stderr, "setup failed: %s\n", err.message);
        return 1;
    }

    MR_RUN(term_frequency_and_length_decide);
    MR_RUN(scores_add_over_terms);
    MR_RUN(title_counts_as_text);
    MR_RUN(k_limits_hits);
    MR_RUN(exclude_removes_ids);
    MR_RUN(fts5_syntax_is_harmless);
    MR_RUN(match_expression_quotes_terms);
    MR_RUN(match_expression_caps_terms);
    MR_RUN(dense_mode_needs_vectors);
    MR_RUN(threads_share_handle);

    mr_retriever_close(retriever);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", folder);
    }
    return mr_test_finish();
}
