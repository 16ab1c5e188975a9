/*
 * Building a passage index: counts, metadata, re-indexing that skips
 * existing ids, bad lines with and without skip_bad, and databases that
 * are not passage indexes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "multiround/retriever.h"
#include "test.h"

#define CHECK_CONTAINS(text, fragment)                                             \
    do {                                                                           \
        if (strstr((text), (fragment)) == NULL) {                                  \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'", (text), \
                         (fragment));                                              \
        }                                                                          \
    } while (0)

static char folder[256];

/* Writes text to folder/name and stores the path in path. */
static void write_file(const char *name, const char *text, char *path, size_t size) {
    snprintf(path, size, "%s/%s", folder, name);
    FILE *file = fopen(path, "wb");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s: %s", path, strerror(errno));
        return;
    }
    fputs(text, file);
    fclose(file);
}

/* Stores folder/name in path and removes any file there. */
static void fresh_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "%s/%s", folder, name);
    unlink(path);
}

static const char three_passages[] =
    "{\"id\": 1, \"title\": \"One\", \"text\": \"first passage\", \"source\": \"a\"}\n"
    "{\"id\": \"two\", \"title\": \"Two\", \"text\": \"second passage\"}\n"
    "\n"
    "{\"id\": 3, \"text\": \"third passage\"}\n";

static void build_counts_passages(void) {
    char corpus[512], db[512];
    write_file("three.jsonl", three_passages, corpus, sizeof corpus);
    fresh_path("three.db", db, sizeof db);

    mr_passage_index_stats stats;
    mr_error err;
    CHECK_STATUS(mr_passage_index_build(corpus, db, NULL, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.lines, 4);
    CHECK_INT_EQ(stats.added, 3);
    CHECK_INT_EQ(stats.skipped_existing, 0);
    CHECK_INT_EQ(stats.bad, 0);
    CHECK_INT_EQ(stats.total, 3);

    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(db, &retriever, &err), MR_OK);
    int64_t count = 0;
    CHECK_STATUS(mr_retriever_count(retriever, &count, &err), MR_OK);
    CHECK_INT_EQ(count, 3);

    mr_passage_hit hit;
    CHECK_STATUS(mr_retriever_get(retriever, "two", &hit, &err), MR_OK);
    CHECK_STR_EQ(hit.title, "Two");
    CHECK_STR_EQ(hit.text, "second passage");
    CHECK(!hit.id_is_integer);
    mr_passage_hits_free(&hit, 1);

    CHECK_STATUS(mr_retriever_get(retriever, "3", &hit, &err), MR_OK);
    CHECK(hit.id_is_integer);
    CHECK_STR_EQ(hit.title, "");
    mr_passage_hits_free(&hit, 1);

    CHECK_STATUS(mr_retriever_get(retriever, "4", &hit, &err), MR_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "no passage with id '4'");
    mr_retriever_close(retriever);

    /* The fields other than id, title and text are kept as metadata. */
    sqlite3 *sql = NULL;
    CHECK(sqlite3_open_v2(db, &sql, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    CHECK(sqlite3_prepare_v2(sql, "SELECT metadata FROM passages WHERE id = '1'", -1, &stmt,
                             NULL) == SQLITE_OK);
    CHECK(sqlite3_step(stmt) == SQLITE_ROW);
    const char *metadata = (const char *)sqlite3_column_text(stmt, 0);
    CHECK_STR_EQ(metadata, "{\"source\":\"a\"}");
    sqlite3_finalize(stmt);
    sqlite3_close(sql);
}

static void rebuild_skips_existing_ids(void) {
    char corpus[512], more[512], db[512];
    write_file("first.jsonl", three_passages, corpus, sizeof corpus);
    fresh_path("grow.db", db, sizeof db);
    mr_passage_index_stats stats;
    mr_error err;
    CHECK_STATUS(mr_passage_index_build(corpus, db, NULL, &stats, &err), MR_OK);

    /* Ids 1 and "two" exist; 4 is new and appears twice in the file. The
     * text of a skipped passage is not replaced. */
    write_file("more.jsonl",
               "{\"id\": 1, \"text\": \"replacement text\"}\n"
               "{\"id\": \"two\", \"text\": \"second passage\"}\n"
               "{\"id\": 4, \"text\": \"fourth passage\"}\n"
               "{\"id\": 4, \"text\": \"fourth again\"}\n",
               more, sizeof more);
    CHECK_STATUS(mr_passage_index_build(more, db, NULL, &stats, &err), MR_OK);
    CHECK_INT_EQ(stats.added, 1);
    CHECK_INT_EQ(stats.skipped_existing, 3);
    CHECK_INT_EQ(stats.total, 4);

    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(db, &retriever, &err), MR_OK);
    mr_passage_hit hit;
    CHECK_STATUS(mr_retriever_get(retriever, "1", &hit, &err), MR_OK);
    CHECK_STR_EQ(hit.text, "first passage");
    mr_passage_hits_free(&hit, 1);
    CHECK_STATUS(mr_retriever_get(retriever, "4", &hit, &err), MR_OK);
    CHECK_STR_EQ(hit.text, "fourth passage");
    mr_passage_hits_free(&hit, 1);

    /* The skipped duplicates did not enter the full-text index either. */
    mr_passage_hit hits[10];
    int n = 0;
    CHECK_STATUS(mr_retriever_search(retriever, "replacement again", 10, NULL, 0, hits, &n,
                                     &err),
                 MR_OK);
    CHECK_INT_EQ(n, 0);
    CHECK_STATUS(mr_retriever_search(retriever, "passage", 10, NULL, 0, hits, &n, &err),
                 MR_OK);
    CHECK_INT_EQ(n, 4);
    mr_passage_hits_free(hits, n);
    mr_retriever_close(retriever);
}

/* A corpus with bad lines 3, 5, 7, 9 and 11; blank line 10 still counts. */
static const char bad_corpus[] =
    "{\"id\": 1, \"text\": \"good one\"}\n"               /* 1 */
    "{\"id\": 2, \"text\": \"good two\"}\n"               /* 2 */
    "{\"id\": 3, \"text\": \"unterminated}\n"             /* 3: malformed JSON */
    "{\"id\": 4, \"text\": \"good four\"}\n"              /* 4 */
    "{\"id\": 5, \"title\": \"no text\"}\n"               /* 5: missing text */
    "{\"id\": 6, \"text\": \"good six\"}\n"               /* 6 */
    "{\"id\": {\"n\": 7}, \"text\": \"object id\"}\n"     /* 7: id of the wrong type */
    "{\"id\": 8, \"text\": \"good eight\"}\n"             /* 8 */
    "{\"id\": 9, \"text\": \"a line that is longer than the limit of 64 bytes\"}\n" /* 9 */
    "\n"                                                  /* 10 */
    "{\"id\": 11, \"text\": \"caf\xe9\"}\n"               /* 11: invalid UTF-8 */
    "{\"id\": 12, \"text\": \"good twelve\"}\n";          /* 12 */

/* Collects the warnings logged during a build. */
static char warnings[4096];

static void collect_warning(mr_log_level level, const char *subsystem, const char *message,
                            void *user_data) {
    (void)user_data;
    if (level == MR_LOG_WARN) {
        size_t used = strlen(warnings);
        snprintf(warnings + used, sizeof warnings - used, "%s: %s\n", subsystem, message);
    }
}

static void bad_line_stops_build(void) {
    char corpus[512], db[512];
    write_file("bad.jsonl", bad_corpus, corpus, sizeof corpus);
    fresh_path("bad.db", db, sizeof db);
    mr_passage_index_options options;
    mr_passage_index_options_default(&options);
    options.max_line_bytes = 64;

    mr_passage_index_stats stats;
    mr_error err;
    CHECK_STATUS(mr_passage_index_build(corpus, db, &options, &stats, &err), MR_ERR_FORMAT);
    CHECK_CONTAINS(err.message, "bad.jsonl:3: malformed JSON");
    CHECK_INT_EQ(stats.added, 2);

    /* The two passages before the bad line were committed. */
    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(db, &retriever, &err), MR_OK);
    int64_t count = 0;
    CHECK_STATUS(mr_retriever_count(retriever, &count, &err), MR_OK);
    CHECK_INT_EQ(count, 2);
    mr_retriever_close(retriever);
}

static void skip_bad_counts_lines(void) {
    char corpus[512], db[512];
    write_file("bad.jsonl", bad_corpus, corpus, sizeof corpus);
    fresh_path("skip.db", db, sizeof db);
    mr_passage_index_options options;
    mr_passage_index_options_default(&options);
    options.max_line_bytes = 64;
    options.skip_bad = true;
    options.batch_size = 2;

    warnings[0] = '\0';
    mr_log_set_callback(collect_warning, NULL);
    mr_passage_index_stats stats;
    mr_error err;
    mr_status status = mr_passage_index_build(corpus, db, &options, &stats, &err);
    mr_log_set_callback(NULL, NULL);

    CHECK_STATUS(status, MR_OK);
    CHECK_INT_EQ(stats.lines, 12);
    CHECK_INT_EQ(stats.added, 6);
    CHECK_INT_EQ(stats.bad, 5);
    CHECK_INT_EQ(stats.total, 6);
    CHECK_CONTAINS(warnings, "bad.jsonl:3: malformed JSON");
    CHECK_CONTAINS(warnings, "bad.jsonl:5: missing \"text\"");
    CHECK_CONTAINS(warnings, "bad.jsonl:7: \"id\" is an object");
    CHECK_CONTAINS(warnings, "bad.jsonl:9: line is longer than the limit of 64 bytes");
    CHECK_CONTAINS(warnings, "bad.jsonl:11: invalid UTF-8 at byte 24");
}

/* Counts progress calls into a two-element array: calls, last added. */
static void count_progress(const mr_passage_index_stats *stats, void *user_data) {
    int64_t *counts = user_data;
    counts[0]++;
    counts[1] = stats->added;
}

static void progress_every_lines(void) {
    char corpus[512], db[512];
    write_file("three.jsonl", three_passages, corpus, sizeof corpus);
    fresh_path("every.db", db, sizeof db);
    int64_t counts[2] = {0, -1};
    mr_passage_index_options options;
    mr_passage_index_options_default(&options);
    options.progress_lines = 2;
    options.progress_seconds = 1e6;
    options.progress = count_progress;
    options.progress_user_data = counts;
    mr_error err;
    CHECK_STATUS(mr_passage_index_build(corpus, db, &options, NULL, &err), MR_OK);

    /* Passages end on lines 1, 2 and 4, so lines 2 and 4 report. */
    CHECK_INT_EQ(counts[0], 2);
    CHECK_INT_EQ(counts[1], 3);
}

static void rejects_other_databases(void) {
    char corpus[512], db[512];
    write_file("three.jsonl", three_passages, corpus, sizeof corpus);

    /* An SQLite database with other tables is left alone. */
    fresh_path("other.db", db, sizeof db);
    sqlite3 *sql = NULL;
    CHECK(sqlite3_open(db, &sql) == SQLITE_OK);
    CHECK(sqlite3_exec(sql, "CREATE TABLE notes(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(sql);
    mr_error err;
    CHECK_STATUS(mr_passage_index_build(corpus, db, NULL, NULL, &err), MR_ERR_FORMAT);
    CHECK_CONTAINS(err.message, "not a multiround passage index");
    mr_retriever *retriever = NULL;
    CHECK_STATUS(mr_retriever_open(db, &retriever, &err), MR_ERR_FORMAT);
    CHECK(retriever == NULL);

    /* A file that is not SQLite at all. */
    write_file("text.db", "this is not a database, just some text of enough length "
                          "to fill a header of one hundred bytes, which SQLite reads.\n",
               db, sizeof db);
    CHECK_STATUS(mr_passage_index_build(corpus, db, NULL, NULL, &err), MR_ERR_FORMAT);
    CHECK_CONTAINS(err.message, "not an SQLite database");
    CHECK_STATUS(mr_retriever_open(db, &retriever, &err), MR_ERR_FORMAT);

    /* A missing index and a missing corpus. */
    CHECK_STATUS(mr_retriever_open("/nonexistent/x.db", &retriever, &err), MR_ERR_NOT_FOUND);
    fresh_path("never.db", db, sizeof db);
    CHECK_STATUS(mr_passage_index_build("/nonexistent/c.jsonl", db, NULL, NULL, &err),
                 MR_ERR_NOT_FOUND);
    CHECK(access(db, F_OK) != 0);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_index_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", folder, strerror(errno));
        return 1;
    }

    MR_RUN(build_counts_passages);
    MR_RUN(rebuild_skips_existing_ids);
    MR_RUN(bad_line_stops_build);
    MR_RUN(skip_bad_counts_lines);
    MR_RUN(progress_every_lines);
    MR_RUN(rejects_other_databases);

    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", folder);
    }
    return mr_test_finish();
}
