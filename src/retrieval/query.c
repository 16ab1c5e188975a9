/*
 * Turning natural-language queries into safe FTS5 expressions, and the
 * recall measure used to evaluate retrieval.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/retriever.h"

/* Maximum length in bytes of a term compared against the stopword list. */
#define MAX_STOPWORD_LENGTH 16

/*
 * English function words that match most passages. They add almost
 * nothing to BM25 scores (FTS5 floors the IDF of a term in more than half
 * the rows at 1e-6) but make FTS5 read their long posting lists.
 */
static const char *const stopwords[] = {
    "a",    "an",   "and",  "are",  "as",   "at",   "be",    "but",  "by",   "did",
    "do",   "does", "for",  "from", "had",  "has",  "have",  "he",   "her",  "his",
    "in",   "into", "is",   "it",   "its",  "of",   "on",    "or",   "she",  "such",
    "that", "the",  "their", "then", "there", "these", "they", "this", "to",  "was",
    "were", "what", "which", "who",  "whom", "will", "with",
};

/* Returns whether c is an ASCII letter or digit, or part of a multi-byte
 * UTF-8 character. */
static bool is_term_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c >= 0x80;
}

/* A term of the query: a byte range of it. */
typedef struct query_term {
    size_t start;
    size_t length;
} query_term;

/* Returns whether the term, folded to ASCII lower case, is a stopword. */
static bool is_stopword(const char *term, size_t length) {
    if (length > MAX_STOPWORD_LENGTH) {
        return false;
    }
    char lower[MAX_STOPWORD_LENGTH + 1];
    for (size_t i = 0; i < length; i++) {
        char c = term[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    lower[length] = '\0';
    for (size_t i = 0; i < sizeof stopwords / sizeof stopwords[0]; i++) {
        if (strcmp(lower, stopwords[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Returns whether two byte ranges are equal ignoring ASCII case. */
static bool same_term(const char *a, size_t a_length, const char *b, size_t b_length) {
    if (a_length != b_length) {
        return false;
    }
    for (size_t i = 0; i < a_length; i++) {
        char x = a[i], y = b[i];
        x = x >= 'A' && x <= 'Z' ? (char)(x - 'A' + 'a') : x;
        y = y >= 'A' && y <= 'Z' ? (char)(y - 'A' + 'a') : y;
        if (x != y) {
            return false;
        }
    }
    return true;
}

/*
 * Collects up to MR_RETRIEVER_MAX_TERMS distinct terms of query into
 * terms, leaving out stopwords when skip_stopwords is set. Returns the
 * count.
 */
static int collect_terms(const char *query, bool skip_stopwords, query_term *terms) {
    int count = 0;
    size_t i = 0;
    while (query[i] != '\0' && count < MR_RETRIEVER_MAX_TERMS) {
        if (!is_term_byte((unsigned char)query[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (is_term_byte((unsigned char)query[i])) {
            i++;
        }
        size_t length = i - start;

        if (skip_stopwords && is_stopword(query + start, length)) {
            continue;
        }
        bool repeated = false;
        for (int t = 0; t < count && !repeated; t++) {
            repeated = same_term(query + terms[t].start, terms[t].length, query + start, length);
        }
        if (!repeated) {
            terms[count].start = start;
            terms[count].length = length;
            count++;
        }
    }
    /* NOTE: terms after the first MR_RETRIEVER_MAX_TERMS are dropped
     * silently, so a long passage used as a query loses its tail. */
    return count;
}

mr_status mr_retriever_match_expression(const char *query, char **expression, int *n_terms,
                                        mr_error *err) {
    *expression = NULL;
    *n_terms = 0;
    if (query == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "retriever: the query is NULL");
    }

    query_term terms[MR_RETRIEVER_MAX_TERMS];
    int count = collect_terms(query, true, terms);
    if (count == 0) {
        /* A question of stopwords only, such as "The Who", keeps them. */
        count = collect_terms(query, false, terms);
    }

    /* Each term becomes "term" and terms are joined by " OR ". Terms
     * contain no ASCII punctuation, so no quote needs escaping. */
    size_t size = 1;
    for (int t = 0; t < count; t++) {
        size += terms[t].length + 2 + 4;
    }
    char *out = malloc(size);
    if (out == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "retriever: out of memory building a query of %zu bytes", size);
    }
    size_t used = 0;
    for (int t = 0; t < count; t++) {
        if (t > 0) {
            memcpy(out + used, " OR ", 4);
            used += 4;
        }
        out[used++] = '"';
        memcpy(out + used, query + terms[t].start, terms[t].length);
        used += terms[t].length;
        out[used++] = '"';
    }
    out[used] = '\0';

    *expression = out;
    *n_terms = count;
    return MR_OK;
}

double mr_retrieval_recall_at_k(const char *const *retrieved, int n_retrieved,
                                const char *const *gold, int n_gold, int k) {
    int considered = k < n_retrieved ? k : n_retrieved;
    int distinct = 0;
    int found = 0;
    for (int g = 0; g < n_gold; g++) {
        bool repeated = false;
        for (int earlier = 0; earlier < g && !repeated; earlier++) {
            repeated = strcmp(gold[earlier], gold[g]) == 0;
        }
        if (repeated) {
            continue;
        }
        distinct++;

        for (int r = 0; r < considered; r++) {
            if (strcmp(retrieved[r], gold[g]) == 0) {
                found++;
                break;
            }
        }
    }
    if (distinct == 0) {
        return NAN;
    }
    return (double)found / (double)distinct;
}
