/*
 * The raw HTTP helpers of http_probe.h, linked into every test of
 * tests/serve.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http_probe.h"

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static size_t receive(char *data, size_t size, size_t count, void *opaque) {
    probe_reply *reply = opaque;
    size_t n = size * count;
    char *bigger = realloc(reply->body, reply->size + n + 1);
    if (bigger == NULL) {
        return 0;
    }
    reply->body = bigger;
    memcpy(reply->body + reply->size, data, n);
    reply->size += n;
    reply->body[reply->size] = '\0';
    return n;
}

/* Copies the value of header `name` into out when line is that header. */
static void copy_header(const char *line, size_t n, const char *name, char *out, size_t cap) {
    size_t name_len = strlen(name);
    if (n <= name_len || strncasecmp(line, name, name_len) != 0) {
        return;
    }
    const char *value = line + name_len;
    size_t len = n - name_len;
    while (len > 0 && (*value == ' ')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n')) {
        len--;
    }
    len = len < cap - 1 ? len : cap - 1;
    memcpy(out, value, len);
    out[len] = '\0';
}

static size_t receive_header(char *data, size_t size, size_t count, void *opaque) {
    probe_reply *reply = opaque;
    size_t n = size * count;
    copy_header(data, n, "Allow:", reply->allow, sizeof reply->allow);
    copy_header(data, n, "Content-Type:", reply->content_type, sizeof reply->content_type);
    return n;
}

void probe_request(const char *method, const char *url, const char *body, size_t size,
                   bool chunked, double timeout_s, probe_reply *reply) {
    probe_request_with_header(method, url, body, size, chunked, NULL, timeout_s, reply);
}

void probe_request_with_header(const char *method, const char *url, const char *body,
                               size_t size, bool chunked, const char *header,
                               double timeout_s, probe_reply *reply) {
    memset(reply, 0, sizeof *reply);
    double start = now_s();
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        reply->curl_code = CURLE_FAILED_INIT;
        return;
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, header != NULL ? header : "Expect:");
    if (chunked) {
        headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (body != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        if (!chunked) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
        }
    }
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, receive);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, receive_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);

    reply->curl_code = (int)curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    reply->seconds = now_s() - start;
}

void probe_reply_free(probe_reply *reply) {
    free(reply->body);
    memset(reply, 0, sizeof *reply);
}

bool probe_body_contains(const probe_reply *reply, const char *text) {
    return reply->body != NULL && strstr(reply->body, text) != NULL;
}

int probe_split_events(char *body, char **events, int cap) {
    int count = 0;
    char *cursor = body;
    while (cursor != NULL && *cursor != '\0') {
        char *end = strstr(cursor, "\n\n");
        if (end != NULL) {
            *end = '\0';
        }
        if (strncmp(cursor, "data: ", 6) == 0) {
            if (count < cap) {
                events[count] = cursor + 6;
            }
            count++;
        }
        cursor = end != NULL ? end + 2 : NULL;
    }
    return count;
}

const char *probe_cli_path(void) {
    static char path[PATH_MAX];
    const char *from_env = getenv("MR_CLI_PATH");
    if (from_env != NULL && from_env[0] != '\0') {
        return from_env;
    }
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) {
        return NULL;
    }
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (slash == NULL) {
        return NULL;
    }
    *slash = '\0';
    slash = strrchr(path, '/');
    if (slash == NULL) {
        return NULL;
    }
    snprintf(slash, sizeof path - (size_t)(slash - path), "/multiround");
    return path;
}
