/*
 * Building a passage index: JSONL passages into SQLite and FTS5, in
 * batched transactions, skipping ids that are already present.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "multiround/retriever.h"
#include "schema.h"

/* Bad lines logged one by one with skip_bad; later ones are only counted. */
#define MAX_LOGGED_BAD_LINES 10

/* The open database and prepared statements of one build. */
typedef struct index_builder {
    sqlite3 *db;
    const char *path;
    sqlite3_stmt *insert_passage;
    sqlite3_stmt *insert_fts;
    bool in_transaction;
} index_builder;

/* Seconds from a monotonic clock. */
static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

void mr_passage_index_options_default(mr_passage_index_options *options) {
    memset(options, 0, sizeof *options);
    options->batch_size = 10000;
    options->skip_bad = false;
    options->max_line_bytes = MR_JSONL_DEFAULT_MAX_LINE_BYTES;
    options->progress_lines = 100000;
    options->progress_seconds = 10.0;
}

/* Stores SQLite's message for the builder's database in err. */
static mr_status sqlite_error(index_builder *builder, const char *doing, mr_error *err) {
    return mr_error_set(err, MR_ERR_IO, "index: %s in %s failed: %s", doing, builder->path,
                        sqlite3_errmsg(builder->db));
}

/* Runs SQL that returns no rows. */
static mr_status exec_sql(index_builder *builder, const char *sql, const char *doing,
                          mr_error *err) {
    if (sqlite3_exec(builder->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        return sqlite_error(builder, doing, err);
    }
    return MR_OK;
}

/* Reads meta.value for key into value (size bytes); "" when absent. */
static mr_status read_meta(index_builder *builder, const char *key, char *value, size_t size,
                           mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    value[0] = '\0';
    if (sqlite3_prepare_v2(builder->db, "SELECT value FROM meta WHERE key = ?1", -1, &stmt,
                           NULL) != SQLITE_OK) {
        return sqlite_error(builder, "reading the index metadata", err);
    }
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != NULL) {
        snprintf(value, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return MR_OK;
}

/*
 * Creates the tables of a new index, or checks that an existing database
 * is an index of this layout. Any other database is rejected rather than
 * changed.
 */
static mr_status prepare_schema(index_builder *builder, mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(builder->db, "SELECT count(*) FROM sqlite_schema", -1, &stmt,
                           NULL) != SQLITE_OK) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "index: %s is not an SQLite database (%s); choose another "
                            "output path",
                            builder->path, sqlite3_errmsg(builder->db));
    }
    int64_t tables = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    sqlite3_finalize(stmt);

    if (tables > 0) {
        char format[64], version[16];
        if (sqlite3_exec(builder->db, "SELECT 1 FROM meta LIMIT 1", NULL, NULL, NULL) !=
                SQLITE_OK ||
            read_meta(builder, "format", format, sizeof format, err) != MR_OK ||
            strcmp(format, MR_INDEX_FORMAT) != 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "index: %s is an SQLite database but not a multiround "
                                "passage index; choose another output path",
                                builder->path);
        }
        mr_status status = read_meta(builder, "version", version, sizeof version, err);
        if (status != MR_OK) {
            return status;
        }
        if (strcmp(version, MR_INDEX_VERSION) != 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "index: %s has layout version %s but this build writes "
                                "version %s; rebuild it into a new file",
                                builder->path, version, MR_INDEX_VERSION);
        }
        return MR_OK;
    }

    const char *create =
        "BEGIN;"
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('format', '" MR_INDEX_FORMAT "'),"
        " ('version', '" MR_INDEX_VERSION "'), ('tokenizer', '" MR_INDEX_TOKENIZER "');"
        "CREATE TABLE passages(rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
        " id_is_integer INTEGER NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,"
        " metadata TEXT);"
        "CREATE VIRTUAL TABLE passages_fts USING fts5(title, text, content='passages',"
        " content_rowid='rowid', tokenize='" MR_INDEX_TOKENIZER "');"
        "COMMIT;";
    if (sqlite3_exec(builder->db, create, NULL, NULL, NULL) != SQLITE_OK) {
        mr_status status = sqlite_error(builder, "creating the tables", err);
        sqlite3_exec(builder->db, "ROLLBACK", NULL, NULL, NULL);
        return status;
    }
    return MR_OK;
}

/* Opens or creates the database and prepares the insert statements. */
static mr_status builder_open(index_builder *builder, const char *path, mr_error *err) {
    memset(builder, 0, sizeof *builder);
    builder->path = path;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &builder->db, flags, NULL) != SQLITE_OK) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "index: cannot open %s: %s", path,
                                        builder->db != NULL ? sqlite3_errmsg(builder->db)
                                                            : "out of memory");
        sqlite3_close(builder->db);
        builder->db = NULL;
        return status;
    }

    /* Batched transactions make a crash lose at most the open batch; the
     * rollback journal keeps the file consistent either way. */
    mr_status status = prepare_schema(builder, err);
    if (status == MR_OK) {
        status = exec_sql(builder, "PRAGMA synchronous = NORMAL", "setting pragmas", err);
    }
    if (status != MR_OK) {
        return status;
    }

    const char *insert_passage =
        "INSERT INTO passages(id, id_is_integer, title, text, metadata)"
        " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING";
    const char *insert_fts = "INSERT INTO passages_fts(rowid, title, text) VALUES(?1, ?2, ?3)";
    if (sqlite3_prepare_v2(builder->db, insert_passage, -1, &builder->insert_passage, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(builder->db, insert_fts, -1, &builder->insert_fts, NULL) !=
            SQLITE_OK) {
        return sqlite_error(builder, "preparing the inserts", err);
    }
    return MR_OK;
}

/* Rolls back an open transaction and closes the database. */
static void builder_close(index_builder *builder) {
    if (builder->in_transaction) {
        sqlite3_exec(builder->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_finalize(builder->insert_passage);
    sqlite3_finalize(builder->insert_fts);
    sqlite3_close(builder->db);
}

/* Inserts one passage; sets *added to false when its id exists. */
static mr_status insert_passage(index_builder *builder, const mr_passage *passage,
                                bool *added, mr_error *err) {
    sqlite3_stmt *stmt = builder->insert_passage;
    sqlite3_reset(stmt);
    sqlite3_bind_text(stmt, 1, passage->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, passage->id_is_integer ? 1 : 0);
    sqlite3_bind_text(stmt, 3, passage->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, passage->text, -1, SQLITE_STATIC);
    if (passage->metadata != NULL) {
        sqlite3_bind_text(stmt, 5, passage->metadata, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(stmt, 5);
    }
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        return sqlite_error(builder, "inserting a passage", err);
    }
    *added = sqlite3_changes(builder->db) > 0;
    if (!*added) {
        return MR_OK;
    }

    sqlite3_int64 rowid = sqlite3_last_insert_rowid(builder->db);
    stmt = builder->insert_fts;
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, rowid);
    sqlite3_bind_text(stmt, 2, passage->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, passage->text, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        return sqlite_error(builder, "indexing a passage", err);
    }
    return MR_OK;
}

/* Opens a transaction unless one is open. */
static mr_status begin_batch(index_builder *builder, mr_error *err) {
    if (builder->in_transaction) {
        return MR_OK;
    }
    mr_status status = exec_sql(builder, "BEGIN", "starting a transaction", err);
    builder->in_transaction = status == MR_OK;
    return status;
}

/* Commits the open transaction, if any. */
static mr_status commit_batch(index_builder *builder, mr_error *err) {
    if (!builder->in_transaction) {
        return MR_OK;
    }
    builder->in_transaction = false;
    return exec_sql(builder, "COMMIT", "committing a batch", err);
}

/* Stores the number of passages in the index in stats->total. */
static mr_status count_passages(index_builder *builder, mr_passage_index_stats *stats,
                                mr_error *err) {
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(builder->db, "SELECT count(*) FROM passages", -1, &stmt, NULL) !=
        SQLITE_OK) {
        return sqlite_error(builder, "counting passages", err);
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        stats->total = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    return MR_OK;
}

/*
 * Handles a bad line: with skip_bad, logs it (the first few only) and
 * returns MR_OK so that the build goes on; otherwise returns its status.
 */
static mr_status handle_bad_line(const mr_passage_index_options *options, mr_status status,
                                 const mr_error *line_error, mr_passage_index_stats *stats,
                                 mr_error *err) {
    if (!options->skip_bad || status == MR_ERR_IO || status == MR_ERR_NO_MEMORY) {
        if (err != NULL && err != line_error) {
            *err = *line_error;
        }
        return status;
    }
    stats->bad++;
    if (stats->bad <= MAX_LOGGED_BAD_LINES) {
        mr_log(MR_LOG_WARN, "index", "skipped: %s", line_error->message);
    }
    if (stats->bad == MAX_LOGGED_BAD_LINES) {
        mr_log(MR_LOG_WARN, "index", "further bad lines are counted but not logged");
    }
    return MR_OK;
}

/* Reads, parses and inserts every line of reader. */
static mr_status index_lines(index_builder *builder, mr_jsonl_reader *reader,
                             const char *jsonl_path, const mr_passage_index_options *options,
                             mr_passage_index_stats *stats, double start, mr_error *err) {
    double last_progress = start;
    int64_t in_batch = 0;
    for (;;) {
        const char *line = NULL;
        size_t length = 0;
        int64_t line_number = 0;
        mr_error line_error;
        mr_error_clear(&line_error);
        mr_status status = mr_jsonl_reader_next(reader, &line, &length, &line_number,
                                                &line_error);
        stats->lines = line_number;

        mr_passage passage;
        memset(&passage, 0, sizeof passage);
        if (status == MR_OK && line == NULL) {
            break;
        }
        if (status == MR_OK) {
            status = mr_passage_parse(line, length, jsonl_path, line_number, &passage,
                                      &line_error);
        }
        if (status != MR_OK) {
            status = handle_bad_line(options, status, &line_error, stats, err);
            if (status != MR_OK) {
                return status;
            }
            continue;
        }

        bool added = false;
        status = begin_batch(builder, err);
        if (status == MR_OK) {
            status = insert_passage(builder, &passage, &added, err);
        }
        mr_passage_free(&passage);
        if (status != MR_OK) {
            return status;
        }
        if (added) {
            stats->added++;
        } else {
            stats->skipped_existing++;
        }

        if (++in_batch >= options->batch_size) {
            in_batch = 0;
            status = commit_batch(builder, err);
            if (status != MR_OK) {
                return status;
            }
        }

        double now = now_seconds();
        bool due = stats->lines % options->progress_lines == 0 ||
                   now - last_progress >= options->progress_seconds;
        if (options->progress != NULL && due) {
            last_progress = now;
            stats->seconds = now - start;
            options->progress(stats, options->progress_user_data);
        }
    }
    return MR_OK;
}

/* Deletes a database file that a failed build created with no passages,
 * with SQLite's journal files, so that no empty index is left behind. */
static void remove_new_database(const char *db_path) {
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char path[4096];
        int length = snprintf(path, sizeof path, "%s%s", db_path, suffixes[i]);
        if (length > 0 && (size_t)length < sizeof path) {
            unlink(path);
        }
    }
}

mr_status mr_passage_index_build(const char *jsonl_path, const char *db_path,
                                 const mr_passage_index_options *options,
                                 mr_passage_index_stats *stats, mr_error *err) {
    mr_passage_index_options defaults;
    mr_passage_index_stats local_stats;
    mr_passage_index_options_default(&defaults);
    if (options == NULL) {
        options = &defaults;
    }
    if (stats == NULL) {
        stats = &local_stats;
    }
    memset(stats, 0, sizeof *stats);
    if (options->batch_size < 1 || options->progress_lines < 1 ||
        !(options->progress_seconds > 0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "index: batch_size (%lld) and progress_lines (%lld) must be at "
                            "least 1 and progress_seconds (%g) positive",
                            (long long)options->batch_size, (long long)options->progress_lines,
                            options->progress_seconds);
    }
    double start = now_seconds();

    mr_jsonl_reader *reader = NULL;
    mr_status status = mr_jsonl_reader_open(jsonl_path, options->max_line_bytes, &reader, err);
    if (status != MR_OK) {
        return status;
    }
    struct stat db_info;
    bool db_existed = stat(db_path, &db_info) == 0;
    index_builder builder;
    status = builder_open(&builder, db_path, err);

    /* On a bad line the passages before it are committed, so the index
     * contains every line up to the error and a rerun skips them. */
    if (status == MR_OK) {
        status = index_lines(&builder, reader, jsonl_path, options, stats, start, err);
        mr_error commit_error;
        mr_status commit_status = commit_batch(&builder, &commit_error);
        if (status == MR_OK && commit_status != MR_OK) {
            status = commit_status;
            if (err != NULL) {
                *err = commit_error;
            }
        }
    }

    /* One merged segment makes queries read one b-tree per term. */
    if (status == MR_OK && stats->added > 0) {
        status = exec_sql(&builder, "INSERT INTO passages_fts(passages_fts) VALUES('optimize')",
                          "merging the full-text index", err);
    }
    if (status == MR_OK) {
        status = count_passages(&builder, stats, err);
    }
    stats->seconds = now_seconds() - start;

    builder_close(&builder);
    mr_jsonl_reader_close(reader);
    if (status != MR_OK && !db_existed && stats->added == 0) {
        remove_new_database(db_path);
    }
    return status;
}
