/*
 * `multiround search`: ranks the passages of an index for one query with
 * BM25, dense vectors or their fusion, or evaluates gold-passage recall
 * and latency over a file of questions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "multiround/retriever.h"

/* Default number of hits. */
#define DEFAULT_K 10
/* Cutoffs of the recall evaluation; the evaluation retrieves the largest. */
static const int recall_cutoffs[] = {2, 5, 10};
#define N_CUTOFFS 3
/* Maximum number of supporting titles read per question. */
#define MAX_GOLD_TITLES 64
/* Maximum questions searched in one batch. */
#define MAX_QUERY_BATCH 1024

static void print_help(FILE *out) {
    fprintf(out,
            "usage: multiround search CORPUS.db QUERY [-k N] [--exclude ID,...] [--json]\n"
            "           [--dense | --hybrid] [-m MODEL.gguf]\n"
            "       multiround search CORPUS.db --questions FILE.jsonl [--json] ...\n\n"
            "Ranks the passages of an index built by 'multiround index build' for QUERY with\n"
            "BM25 over title and text, and prints the best N with their scores (higher is\n"
            "better). QUERY is plain text: it is split into words, which are searched as\n"
            "quoted terms joined by OR, so FTS5 syntax in it has no effect.\n\n"
            "--dense embeds QUERY with MODEL and ranks every passage by the cosine of its\n"
            "vector from 'multiround index embed' with the query's. --hybrid fuses the BM25\n"
            "and dense rankings by reciprocal-rank fusion: score = sum over the two rankings\n"
            "of 1 / (K + rank), ranks from 1, each ranking cut at its first D passages.\n\n"
            "With --questions, runs every question of FILE.jsonl (objects with \"question\"\n"
            "and \"supporting_titles\") and prints gold-passage recall@2/5/10, the share of\n"
            "questions with every gold passage in the top k, and query latency.\n\n"
            "options:\n"
            "  -k N               number of passages to print (default %d, at most %d)\n"
            "  --exclude ID,...   never return these passage ids (comma-separated; the\n"
            "                     option may be repeated)\n"
            "  --json             print JSON Lines (one hit, or one summary, per line)\n"
            "  --questions FILE   evaluate recall and latency on the questions of FILE\n"
            "                     (each searched with k = 10; -k and --exclude are ignored)\n"
            "  --dense            rank by embedding similarity (needs -m)\n"
            "  --hybrid           fuse BM25 and dense rankings (needs -m)\n"
            "  -m, --model FILE   GGUF model that embedded the index, used for queries\n"
            "  --rrf-k K          RRF constant K of --hybrid (default %g)\n"
            "  --rrf-depth D      passages taken from each ranking by --hybrid (default %d;\n"
            "                     at least -k)\n"
            "  --query-batch N    questions searched per call with --questions (default 1;\n"
            "                     dense and hybrid embed and score a batch at once, and each\n"
            "                     question's latency is then its batch's time)\n",
            DEFAULT_K, MR_RETRIEVER_MAX_K, MR_RETRIEVER_DEFAULT_RRF_K,
            MR_RETRIEVER_DEFAULT_RRF_DEPTH);
    cli_print_shared_options(out, 21);
}

/* The parsed options of one search command. */
typedef struct search_options {
    const char *database;
    const char *query;
    const char *questions;
    int k;
    bool json;
    char **exclude; /* excluded ids, each a heap string */
    int n_exclude;
    mr_retriever_mode mode;
    const char *model;
    double rrf_k;
    int rrf_depth;
    int query_batch;
} search_options;

/* Appends copies of the comma-separated ids of list to options->exclude. */
static bool add_excluded(search_options *options, const char *list) {
    const char *start = list;
    for (;;) {
        size_t length = strcspn(start, ",");
        if (length > 0) {
            char **grown = realloc(options->exclude, (size_t)(options->n_exclude + 1) *
                                                         sizeof *grown);
            char *id = malloc(length + 1);
            if (grown != NULL) {
                options->exclude = grown;
            }
            if (grown == NULL || id == NULL) {
                free(id);
                cli_error("out of memory reading --exclude");
                return false;
            }
            memcpy(id, start, length);
            id[length] = '\0';
            options->exclude[options->n_exclude++] = id;
        }
        if (start[length] == '\0') {
            return true;
        }
        start += length + 1;
    }
}

/* Frees the excluded ids. */
static void free_excluded(search_options *options) {
    for (int i = 0; i < options->n_exclude; i++) {
        free(options->exclude[i]);
    }
    free(options->exclude);
    options->exclude = NULL;
    options->n_exclude = 0;
}

/* Parses the value of a dense or hybrid option; prints an error and
 * returns false when it is invalid. */
static bool parse_dense_option(const char *option, const char *value, search_options *options) {
    int64_t number = 0;
    if (option[1] == 'm' || strcmp(option, "--model") == 0) {
        options->model = value;
    } else if (strcmp(option, "--rrf-k") == 0) {
        char rest[2];
        double k = 0;
        if (sscanf(value, "%lf%1s", &k, rest) != 1 || !(k >= 0) || k > 1e9) {
            cli_error("invalid value '%s' for --rrf-k: expected a number from 0 to 1e9", value);
            return false;
        }
        options->rrf_k = k;
    } else if (strcmp(option, "--rrf-depth") == 0) {
        if (!cli_parse_int64(option, value, 1, MR_RETRIEVER_MAX_K, &number)) {
            return false;
        }
        options->rrf_depth = (int)number;
    } else {
        if (!cli_parse_int64(option, value, 1, MAX_QUERY_BATCH, &number)) {
            return false;
        }
        options->query_batch = (int)number;
    }
    return true;
}

/* Parses argv into options; returns -1 to go on, or an exit code. */
static int parse_options(int argc, char **argv, search_options *options) {
    options->k = DEFAULT_K;
    options->mode = MR_RETRIEVER_BM25;
    options->rrf_k = MR_RETRIEVER_DEFAULT_RRF_K;
    options->rrf_depth = MR_RETRIEVER_DEFAULT_RRF_DEPTH;
    options->query_batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help(stdout);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }

        if (strcmp(option, "--json") == 0) {
            options->json = true;
        } else if (strcmp(option, "--dense") == 0 || strcmp(option, "--hybrid") == 0) {
            options->mode = option[2] == 'd' ? MR_RETRIEVER_DENSE : MR_RETRIEVER_HYBRID;
        } else if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0 ||
                   strcmp(option, "--rrf-k") == 0 || strcmp(option, "--rrf-depth") == 0 ||
                   strcmp(option, "--query-batch") == 0) {
            if (value == NULL) {
                cli_error("%s needs a value; run 'multiround search --help'", option);
                return 2;
            }
            i++;
            if (!parse_dense_option(option, value, options)) {
                return 2;
            }
        } else if (strcmp(option, "-k") == 0 || strcmp(option, "--exclude") == 0 ||
                   strcmp(option, "--questions") == 0) {
            if (value == NULL) {
                cli_error("%s needs a value; run 'multiround search --help'", option);
                return 2;
            }
            i++;
            int64_t k = 0;
            if (option[1] == 'k') {
                if (!cli_parse_int64(option, value, 1, MR_RETRIEVER_MAX_K, &k)) {
                    return 2;
                }
                options->k = (int)k;
            } else if (strcmp(option, "--exclude") == 0) {
                if (!add_excluded(options, value)) {
                    return 1;
                }
            } else {
                options->questions = value;
            }
        } else if (option[0] == '-' && option[1] != '\0') {
            cli_error("unknown option '%s' for search; run 'multiround search --help'",
                      option);
            return 2;
        } else if (options->database == NULL) {
            options->database = option;
        } else if (options->query == NULL) {
            options->query = option;
        } else {
            cli_error("search takes one query; quote it, as in multiround search %s \"%s "
                      "%s\"",
                      options->database, options->query, option);
            return 2;
        }
    }

    if (options->database == NULL || (options->query == NULL) == (options->questions == NULL)) {
        cli_error("search needs an index and either a query or --questions FILE; run "
                  "'multiround search --help'");
        return 2;
    }
    if (options->mode != MR_RETRIEVER_BM25 && options->model == NULL) {
        cli_error("%s search needs the embedding model: add -m MODEL.gguf",
                  options->mode == MR_RETRIEVER_DENSE ? "--dense" : "--hybrid");
        return 2;
    }
    return -1;
}

/* Prints one hit as text or as a JSON line. */
static void print_hit(const mr_passage_hit *hit, int rank, bool json) {
    if (!json) {
        printf("%d. [%s] %.4f  %s\n   %s\n", rank, hit->id, hit->score, hit->title, hit->text);
        return;
    }
    cJSON *line = cJSON_CreateObject();
    cJSON_AddNumberToObject(line, "rank", rank);
    if (hit->id_is_integer) {
        cJSON_AddRawToObject(line, "id", hit->id);
    } else {
        cJSON_AddStringToObject(line, "id", hit->id);
    }
    cJSON_AddNumberToObject(line, "score", hit->score);
    cJSON_AddStringToObject(line, "title", hit->title);
    cJSON_AddStringToObject(line, "text", hit->text);
    char *text = cJSON_PrintUnformatted(line);
    if (text != NULL) {
        printf("%s\n", text);
    }
    cJSON_free(text);
    cJSON_Delete(line);
}

/* Runs one query and prints its hits. */
static int search_one(mr_retriever *retriever, const search_options *options) {
    mr_passage_hit *hits = calloc((size_t)options->k, sizeof *hits);
    if (hits == NULL) {
        cli_error("out of memory for %d hits", options->k);
        return 1;
    }
    int n = 0;
    mr_error err;
    mr_status status = mr_retriever_search(retriever, options->query, options->k,
                                           (const char *const *)options->exclude,
                                           options->n_exclude, hits, &n, &err);
    if (status != MR_OK) {
        cli_error("%s", err.message);
        free(hits);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        print_hit(&hits[i], i + 1, options->json);
    }
    if (n == 0 && !options->json) {
        fprintf(stderr, "search: no passage matches the query\n");
    }
    mr_passage_hits_free(hits, n);
    free(hits);
    return 0;
}

/* Totals of an evaluation over a question file. */
typedef struct evaluation {
    int64_t questions;      /* questions run */
    int64_t with_gold;      /* questions that have supporting titles */
    double recall[N_CUTOFFS];
    double all_found[N_CUTOFFS];
    double *latencies;      /* seconds per query: the time of its batch */
    double seconds;         /* time of all batches */
    int64_t latency_capacity;
} evaluation;

/* Compares doubles for qsort. */
static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the q-quantile of the sorted values (nearest rank). */
static double quantile(const double *sorted, int64_t n, double q) {
    if (n == 0) {
        return 0.0;
    }
    int64_t rank = (int64_t)(q * (double)n + 0.999999);
    rank = rank < 1 ? 1 : (rank > n ? n : rank);
    return sorted[rank - 1];
}

/* One question of a batch, with strings borrowed from its parsed line. */
typedef struct pending_question {
    cJSON *root;
    const char *text;
    const char *gold[MAX_GOLD_TITLES];
    int n_gold;
} pending_question;

/* Reads the question and gold titles of a parsed line into question;
 * prints an error naming the line and returns false when the question is
 * missing or the titles are not an array of strings. */
static bool read_question(cJSON *root, const char *file, int64_t line_number,
                          pending_question *question) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "question");
    if (!cJSON_IsString(text)) {
        cli_error("%s:%lld: \"question\" is missing or not a string", file,
                  (long long)line_number);
        return false;
    }
    question->root = root;
    question->text = text->valuestring;
    question->n_gold = 0;
    const cJSON *titles = cJSON_GetObjectItemCaseSensitive(root, "supporting_titles");
    if (titles == NULL || cJSON_IsNull(titles)) {
        return true;
    }
    if (!cJSON_IsArray(titles)) {
        cli_error("%s:%lld: \"supporting_titles\" must be an array of strings, such as "
                  "[\"Title\"]",
                  file, (long long)line_number);
        return false;
    }
    const cJSON *title = NULL;
    int index = 0;
    cJSON_ArrayForEach(title, titles) {
        if (!cJSON_IsString(title)) {
            cli_error("%s:%lld: supporting_titles[%d] is not a string", file,
                      (long long)line_number, index);
            return false;
        }
        if (question->n_gold < MAX_GOLD_TITLES) {
            question->gold[question->n_gold++] = title->valuestring;
        }
        index++;
    }
    return true;
}

/* Searches a batch of n questions in one call and adds their recall and
 * latency (the batch's time, for each question) to eval. */
static int evaluate_batch(mr_retriever *retriever, const pending_question *batch, int n,
                          mr_passage_hit *hits, evaluation *eval) {
    const int k = recall_cutoffs[N_CUTOFFS - 1];
    const char *queries[MAX_QUERY_BATCH];
    int counts[MAX_QUERY_BATCH];
    for (int q = 0; q < n; q++) {
        queries[q] = batch[q].text;
    }
    mr_error err;
    double start = cli_seconds();
    mr_status status = mr_retriever_search_batch(retriever, queries, n, k, NULL, 0, hits,
                                                 counts, &err);
    double seconds = cli_seconds() - start;
    eval->seconds += seconds;
    if (status != MR_OK) {
        cli_error("after %lld questions: %s", (long long)eval->questions, err.message);
        return 1;
    }

    if (eval->questions + n > eval->latency_capacity) {
        int64_t capacity = eval->latency_capacity > 0 ? 2 * eval->latency_capacity : 1024;
        capacity = capacity < eval->questions + n ? eval->questions + n : capacity;
        double *grown = realloc(eval->latencies, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            for (int q = 0; q < n; q++) {
                mr_passage_hits_free(hits + (int64_t)q * k, counts[q]);
            }
            cli_error("out of memory after %lld questions", (long long)eval->questions);
            return 1;
        }
        eval->latencies = grown;
        eval->latency_capacity = capacity;
    }

    for (int q = 0; q < n; q++) {
        mr_passage_hit *question_hits = hits + (int64_t)q * k;
        eval->latencies[eval->questions++] = seconds;
        if (batch[q].n_gold > 0) {
            const char *retrieved[16];
            for (int i = 0; i < counts[q]; i++) {
                retrieved[i] = question_hits[i].title;
            }
            eval->with_gold++;
            for (int c = 0; c < N_CUTOFFS; c++) {
                double recall = mr_retrieval_recall_at_k(retrieved, counts[q], batch[q].gold,
                                                         batch[q].n_gold, recall_cutoffs[c]);
                eval->recall[c] += recall;
                eval->all_found[c] += recall == 1.0 ? 1.0 : 0.0;
            }
        }
        mr_passage_hits_free(question_hits, counts[q]);
    }
    return 0;
}

/* Prints the evaluation summary as text or as one JSON line. */
static void print_evaluation(evaluation *eval, const search_options *options) {
    double seconds = eval->seconds;
    qsort(eval->latencies, (size_t)eval->questions, sizeof *eval->latencies, compare_doubles);
    double p50 = 1e3 * quantile(eval->latencies, eval->questions, 0.50);
    double p99 = 1e3 * quantile(eval->latencies, eval->questions, 0.99);
    double divisor = eval->with_gold > 0 ? (double)eval->with_gold : 1.0;
    const char *mode_names[] = {"bm25", "dense", "hybrid"};

    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "index", options->database);
    cJSON_AddStringToObject(json, "questions_file", options->questions);
    cJSON_AddStringToObject(json, "mode", mode_names[options->mode]);
    cJSON_AddNumberToObject(json, "query_batch", options->query_batch);
    cJSON_AddNumberToObject(json, "questions", (double)eval->questions);
    cJSON_AddNumberToObject(json, "questions_with_gold", (double)eval->with_gold);
    /* Recall is undefined without gold titles: JSON gets null and the
     * text n/a, never a 0 that reads as a measured value. */
    bool has_gold = eval->with_gold > 0;
    char key[32];
    for (int c = 0; c < N_CUTOFFS; c++) {
        snprintf(key, sizeof key, "recall@%d", recall_cutoffs[c]);
        if (has_gold) {
            cJSON_AddNumberToObject(json, key, eval->recall[c] / divisor);
        } else {
            cJSON_AddNullToObject(json, key);
        }
    }
    for (int c = 0; c < N_CUTOFFS; c++) {
        snprintf(key, sizeof key, "all_gold@%d", recall_cutoffs[c]);
        if (has_gold) {
            cJSON_AddNumberToObject(json, key, eval->all_found[c] / divisor);
        } else {
            cJSON_AddNullToObject(json, key);
        }
    }
    cJSON_AddNumberToObject(json, "latency_p50_ms", p50);
    cJSON_AddNumberToObject(json, "latency_p99_ms", p99);
    cJSON_AddNumberToObject(json, "queries_per_second",
                            seconds > 0 ? (double)eval->questions / seconds : 0.0);

    if (options->json) {
        char *text = cJSON_PrintUnformatted(json);
        if (text != NULL) {
            printf("%s\n", text);
        }
        cJSON_free(text);
    } else {
        printf("questions: %lld (%lld with gold titles), mode %s, %d per batch\n",
               (long long)eval->questions, (long long)eval->with_gold, mode_names[options->mode],
               options->query_batch);
        for (int c = 0; c < N_CUTOFFS && has_gold; c++) {
            printf("recall@%-2d %.4f   all gold in top %-2d %.4f\n", recall_cutoffs[c],
                   eval->recall[c] / divisor, recall_cutoffs[c], eval->all_found[c] / divisor);
        }
        if (!has_gold) {
            printf("recall: n/a (no question has gold titles)\n");
        }
        printf("latency: p50 %.3f ms, p99 %.3f ms, %.0f queries/s\n", p50, p99,
               seconds > 0 ? (double)eval->questions / seconds : 0.0);
    }
    cJSON_Delete(json);
}

/* Runs every question of options->questions, query_batch at a time, and
 * prints the summary. */
static int search_questions(mr_retriever *retriever, const search_options *options) {
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    if (mr_jsonl_reader_open(options->questions, 0, &reader, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    int k = recall_cutoffs[N_CUTOFFS - 1];
    mr_passage_hit *hits = calloc((size_t)options->query_batch * (size_t)k, sizeof *hits);
    pending_question *batch = calloc((size_t)options->query_batch, sizeof *batch);
    evaluation eval;
    memset(&eval, 0, sizeof eval);
    int code = 0;
    int pending = 0;
    if (hits == NULL || batch == NULL) {
        cli_error("out of memory for a batch of %d questions", options->query_batch);
        code = 1;
    }

    bool done = code != 0;
    while (!done) {
        const char *line = NULL;
        size_t length = 0;
        int64_t line_number = 0;
        if (mr_jsonl_reader_next(reader, &line, &length, &line_number, &err) != MR_OK) {
            cli_error("%s", err.message);
            code = 1;
            break;
        }
        done = line == NULL;
        if (line != NULL) {
            cJSON *root = cJSON_ParseWithLength(line, length);
            if (root == NULL) {
                cli_error("%s:%lld: malformed JSON; each line must be one JSON object",
                          options->questions, (long long)line_number);
                code = 1;
                break;
            }
            if (!read_question(root, options->questions, line_number, &batch[pending])) {
                cJSON_Delete(root);
                code = 1;
                break;
            }
            pending++;
        }

        /* Search when the batch is full, and what is left at the end. */
        if (pending == options->query_batch || (done && pending > 0)) {
            code = evaluate_batch(retriever, batch, pending, hits, &eval);
            for (int q = 0; q < pending; q++) {
                cJSON_Delete(batch[q].root);
            }
            pending = 0;
            if (code != 0) {
                break;
            }
        }
    }
    for (int q = 0; q < pending; q++) {
        cJSON_Delete(batch[q].root);
    }
    if (code == 0) {
        print_evaluation(&eval, options);
    }
    free(eval.latencies);
    free(hits);
    free(batch);
    mr_jsonl_reader_close(reader);
    return code;
}

/* Loads the embedding model and selects the mode of options. */
static int select_mode(mr_retriever *retriever, const search_options *options) {
    if (options->mode == MR_RETRIEVER_BM25) {
        return 0;
    }
    mr_error err;
    if (mr_retriever_load_embedder(retriever, options->model, &err) != MR_OK ||
        mr_retriever_set_rrf(retriever, options->rrf_k, options->rrf_depth, &err) != MR_OK ||
        mr_retriever_set_mode(retriever, options->mode, &err) != MR_OK) {
        cli_error("%s", err.message);
        return 1;
    }
    return 0;
}

int cli_search(int argc, char **argv) {
    search_options options;
    memset(&options, 0, sizeof options);
    int code = parse_options(argc, argv, &options);
    if (code >= 0) {
        free_excluded(&options);
        return code;
    }

    mr_retriever *retriever = NULL;
    mr_error err;
    if (mr_retriever_open(options.database, &retriever, &err) != MR_OK) {
        cli_error("%s", err.message);
        code = 1;
    } else if (select_mode(retriever, &options) != 0) {
        code = 1;
    } else if (options.questions != NULL) {
        code = search_questions(retriever, &options);
    } else {
        code = search_one(retriever, &options);
    }
    mr_retriever_close(retriever);
    free_excluded(&options);
    return code;
}
