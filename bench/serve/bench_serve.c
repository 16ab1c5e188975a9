/*
 * Load test of an OpenAI-compatible server such as `multiround serve`:
 * for each client count, that many threads each send a fixed number of
 * short /v1/completions requests one after another over a keep-alive
 * connection. Prints requests/s, latency p50 and p99, completion
 * tokens/s and failed requests per client count. Then a burst phase sends
 * oversized and malformed bodies alongside normal requests: every bad
 * request must get a 4xx reply and every normal one must succeed.
 *
 * Built and driven by bench/serve/run.sh; needs only libcurl and cJSON.
 * Exit code 0 when no request failed, 1 otherwise, 2 on a usage error.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <curl/curl.h>

#define MAX_LEVELS 8

typedef struct bench_options {
    const char *url;         /* API root, e.g. http://127.0.0.1:8080/v1 */
    int levels[MAX_LEVELS];  /* client counts */
    int n_levels;
    int requests;            /* per client */
    int max_tokens;
    size_t oversized_bytes;  /* body size of the oversized burst requests */
    int burst;               /* bad requests in the burst phase */
} bench_options;

/* What one client thread measured. */
typedef struct client_run {
    const bench_options *options;
    int client;
    int n_requests;
    double *latencies_s;     /* [n_requests] */
    int failed;
    long long completion_tokens;
    int kind;                /* burst phase: 0 normal, 1 oversized, 2 malformed */
    int bad_not_4xx;         /* burst phase: bad requests that got no 4xx */
    char first_error[256];
} client_run;

static const char *const prompts[] = {
    "Once upon a time,", "Tom had a red ball.", "The sun was", "Lily and her mom",
    "One day, a little dog", "The cat sat",
};
#define N_PROMPTS (int)(sizeof prompts / sizeof prompts[0])

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* A growable reply body. */
typedef struct body_buffer {
    char *data;
    size_t size;
} body_buffer;

static size_t receive(char *data, size_t size, size_t count, void *opaque) {
    body_buffer *body = opaque;
    size_t n = size * count;
    char *bigger = realloc(body->data, body->size + n + 1);
    if (bigger == NULL) {
        return 0;
    }
    body->data = bigger;
    memcpy(body->data + body->size, data, n);
    body->size += n;
    body->data[body->size] = '\0';
    return n;
}

/* POSTs body to url on the client's handle; returns the HTTP status, or
 * 0 with error filled when no reply arrived. reply receives the body. */
static long post(CURL *curl, const char *url, const char *body, size_t size,
                 body_buffer *reply, char *error, size_t error_size) {
    reply->size = 0;
    if (reply->data != NULL) {
        reply->data[0] = '\0';
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK) {
        snprintf(error, error_size, "%s", curl_easy_strerror(code));
        return 0;
    }
    return status;
}

/* Returns a new handle with the settings every request shares. */
static CURL *new_handle(struct curl_slist *headers) {
    CURL *curl = curl_easy_init();
    if (curl != NULL) {
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, receive);
    }
    return curl;
}

/* Reads usage.completion_tokens from a reply; -1 when absent. */
static long long completion_tokens(const char *reply) {
    cJSON *root = cJSON_Parse(reply);
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    cJSON *tokens = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    long long value = cJSON_IsNumber(tokens) ? (long long)tokens->valuedouble : -1;
    cJSON_Delete(root);
    return value;
}

/* Sends the client's normal requests and records each latency. */
static void *run_client(void *arg) {
    client_run *run = arg;
    const bench_options *options = run->options;
    char url[256];
    snprintf(url, sizeof url, "%s/completions", options->url);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    CURL *curl = new_handle(headers);
    body_buffer reply = {0};

    for (int i = 0; i < run->n_requests && curl != NULL; i++) {
        char body[512];
        int n = snprintf(body, sizeof body,
                         "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0.8,"
                         "\"seed\":%d}",
                         prompts[(run->client + i) % N_PROMPTS], options->max_tokens,
                         run->client * 1000 + i);
        char error[256] = "";
        double start = now_s();
        long status = post(curl, url, body, (size_t)n, &reply, error, sizeof error);
        run->latencies_s[i] = now_s() - start;
        long long tokens = status == 200 ? completion_tokens(reply.data) : -1;
        if (tokens < 0) {
            if (run->failed == 0) {
                snprintf(run->first_error, sizeof run->first_error, "HTTP %ld %s %.120s",
                         status, error, reply.data != NULL ? reply.data : "");
            }
            run->failed++;
        } else {
            run->completion_tokens += tokens;
        }
    }
    free(reply.data);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    return NULL;
}

/* Sends the burst phase's bad requests: oversized (kind 1) or malformed
 * JSON (kind 2). Counts replies that are not 4xx. */
static void *run_bad_client(void *arg) {
    client_run *run = arg;
    const bench_options *options = run->options;
    char url[256];
    snprintf(url, sizeof url, "%s/completions", options->url);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    CURL *curl = new_handle(headers);
    body_buffer reply = {0};

    size_t big_size = options->oversized_bytes;
    char *big = malloc(big_size + 1);
    if (big != NULL) {
        memset(big, 'a', big_size);
        memcpy(big, "{\"prompt\":\"", 11);
        memcpy(big + big_size - 2, "\"}", 2);
        big[big_size] = '\0';
    }
    static const char *const malformed[] = {
        "{\"prompt\": \"a\"", "[]", "{\"prompt\": 5}", "{\"prompt\": \"a\", \"max_tokens\": \"x\"}",
        "{\"prompt\": \"a\", \"temperature\": 9}", "not json at all",
    };

    for (int i = 0; i < run->n_requests && curl != NULL && big != NULL; i++) {
        const char *body = run->kind == 1 ? big : malformed[i % 6];
        size_t size = run->kind == 1 ? big_size : strlen(body);
        char error[256] = "";
        double start = now_s();
        long status = post(curl, url, body, size, &reply, error, sizeof error);
        run->latencies_s[i] = now_s() - start;
        bool expected = run->kind == 1 ? status == 413 : status == 400;
        if (!expected) {
            if (run->bad_not_4xx == 0) {
                snprintf(run->first_error, sizeof run->first_error, "HTTP %ld %s", status,
                         error);
            }
            run->bad_not_4xx++;
        }
    }
    free(big);
    free(reply.data);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the nearest-rank percentile p (0..100) of sorted values. */
static double percentile(const double *sorted, int n, double p) {
    int rank = (int)((p / 100.0) * n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return sorted[rank - 1];
}

/* Runs clients threads with the given thread function and kinds; returns
 * the runs (the caller frees them and their latencies). */
static client_run *run_threads(const bench_options *options, int clients, int requests,
                               void *(*main_fn)(void *), const int *kinds, double *wall_s) {
    client_run *runs = calloc((size_t)clients, sizeof *runs);
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    double start = now_s();
    for (int c = 0; c < clients; c++) {
        runs[c].options = options;
        runs[c].client = c;
        runs[c].n_requests = requests;
        runs[c].kind = kinds != NULL ? kinds[c] : 0;
        runs[c].latencies_s = calloc((size_t)requests, sizeof *runs[c].latencies_s);
        pthread_create(&threads[c], NULL, main_fn, &runs[c]);
    }
    for (int c = 0; c < clients; c++) {
        pthread_join(threads[c], NULL);
    }
    *wall_s = now_s() - start;
    free(threads);
    return runs;
}

/* Runs one client count and prints its table row; returns the number of
 * failed requests. */
static int run_level(const bench_options *options, int clients) {
    double wall_s = 0;
    client_run *runs = run_threads(options, clients, options->requests, run_client, NULL,
                                   &wall_s);
    int total = clients * options->requests;
    double *all = calloc((size_t)total, sizeof *all);
    int failed = 0;
    long long tokens = 0;
    for (int c = 0; c < clients; c++) {
        memcpy(all + (size_t)c * (size_t)options->requests, runs[c].latencies_s,
               (size_t)options->requests * sizeof *all);
        failed += runs[c].failed;
        tokens += runs[c].completion_tokens;
        if (runs[c].failed > 0) {
            fprintf(stderr, "bench_serve: client %d: %d failed; first: %s\n", c, runs[c].failed,
                    runs[c].first_error);
        }
        free(runs[c].latencies_s);
    }
    qsort(all, (size_t)total, sizeof *all, compare_doubles);
    printf("| %d | %d | %d | %.1f | %.1f | %.1f | %.0f | %.2f |\n", clients, total, failed,
           (double)total / wall_s, percentile(all, total, 50) * 1e3,
           percentile(all, total, 99) * 1e3, (double)tokens / wall_s, wall_s);
    fflush(stdout);
    free(all);
    free(runs);
    return failed;
}

/* The burst phase: 4 oversized, 4 malformed and 4 normal clients at once. */
static int run_burst(const bench_options *options) {
    enum { PER_KIND = 4 };
    int bad_per_client = options->burst / (2 * PER_KIND);
    bad_per_client = bad_per_client > 0 ? bad_per_client : 1;

    /* Clients 0..7 alternate oversized and malformed bodies; clients
     * 8..11 send normal requests at the same time. */
    int bad_kinds[2 * PER_KIND];
    for (int c = 0; c < 2 * PER_KIND; c++) {
        bad_kinds[c] = 1 + c % 2;
    }
    client_run *runs = calloc(3 * PER_KIND, sizeof *runs);
    pthread_t threads[3 * PER_KIND];
    double start = now_s();
    for (int c = 0; c < 3 * PER_KIND; c++) {
        bool normal = c >= 2 * PER_KIND;
        runs[c].options = options;
        runs[c].client = c;
        runs[c].n_requests = normal ? options->requests : bad_per_client;
        runs[c].kind = normal ? 0 : bad_kinds[c];
        runs[c].latencies_s = calloc((size_t)runs[c].n_requests, sizeof *runs[c].latencies_s);
        pthread_create(&threads[c], NULL, normal ? run_client : run_bad_client, &runs[c]);
    }
    for (int c = 0; c < 3 * PER_KIND; c++) {
        pthread_join(threads[c], NULL);
    }
    double wall_s = now_s() - start;

    int oversized = 0, malformed = 0, bad_wrong = 0, normal_total = 0, normal_failed = 0;
    for (int c = 0; c < 3 * PER_KIND; c++) {
        if (runs[c].kind == 1) {
            oversized += runs[c].n_requests;
        } else if (runs[c].kind == 2) {
            malformed += runs[c].n_requests;
        } else {
            normal_total += runs[c].n_requests;
            normal_failed += runs[c].failed;
        }
        bad_wrong += runs[c].bad_not_4xx;
        if (runs[c].bad_not_4xx > 0 || runs[c].failed > 0) {
            fprintf(stderr, "bench_serve: burst client %d: first error %s\n", c,
                    runs[c].first_error);
        }
        free(runs[c].latencies_s);
    }
    free(runs);
    printf("\nburst: %d oversized (%zu bytes) and %d malformed requests, %d without the "
           "expected 413/400; %d normal requests alongside, %d failed; %.2f s\n",
           oversized, options->oversized_bytes, malformed, bad_wrong, normal_total,
           normal_failed, wall_s);
    return bad_wrong + normal_failed;
}

static int usage(void) {
    fprintf(stderr,
            "usage: bench_serve --url URL [--clients 1,4,16] [--requests N] [--max-tokens N]\n"
            "                   [--oversized BYTES] [--burst N]\n"
            "  --url URL          API root, e.g. http://127.0.0.1:8080/v1\n"
            "  --clients LIST     client counts, comma-separated (default: 1,4,16)\n"
            "  --requests N       requests per client (default: 20)\n"
            "  --max-tokens N     max_tokens of each request (default: 32)\n"
            "  --oversized BYTES  body size of the oversized requests (default: 2097152)\n"
            "  --burst N          bad requests in the burst phase (default: 64)\n");
    return 2;
}

int main(int argc, char **argv) {
    bench_options options = {.requests = 20, .max_tokens = 32, .oversized_bytes = 2u << 20,
                             .burst = 64, .levels = {1, 4, 16}, .n_levels = 3};
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL) {
            return usage();
        }
        if (strcmp(argv[i], "--url") == 0) {
            options.url = value;
        } else if (strcmp(argv[i], "--clients") == 0) {
            options.n_levels = 0;
            char *copy = strdup(value);
            for (char *item = strtok(copy, ","); item != NULL && options.n_levels < MAX_LEVELS;
                 item = strtok(NULL, ",")) {
                options.levels[options.n_levels++] = atoi(item);
            }
            free(copy);
        } else if (strcmp(argv[i], "--requests") == 0) {
            options.requests = atoi(value);
        } else if (strcmp(argv[i], "--max-tokens") == 0) {
            options.max_tokens = atoi(value);
        } else if (strcmp(argv[i], "--oversized") == 0) {
            options.oversized_bytes = (size_t)strtoull(value, NULL, 10);
        } else if (strcmp(argv[i], "--burst") == 0) {
            options.burst = atoi(value);
        } else {
            return usage();
        }
        i++;
    }
    if (options.url == NULL || options.requests < 1 || options.max_tokens < 1 ||
        options.oversized_bytes < 16 || options.n_levels == 0) {
        return usage();
    }
    for (int l = 0; l < options.n_levels; l++) {
        if (options.levels[l] < 1 || options.levels[l] > 256) {
            fprintf(stderr, "bench_serve: client counts must be 1 to 256\n");
            return 2;
        }
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    printf("%d requests per client, max_tokens %d, temperature 0.8, against %s\n\n",
           options.requests, options.max_tokens, options.url);
    printf("| clients | requests | failed | requests/s | p50 ms | p99 ms | tokens/s | wall s "
           "|\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    int failed = 0;
    for (int l = 0; l < options.n_levels; l++) {
        failed += run_level(&options, options.levels[l]);
    }
    failed += run_burst(&options);
    curl_global_cleanup();
    return failed == 0 ? 0 : 1;
}
