/*
 * Raw HTTP requests for the serve tests, sent with libcurl to 127.0.0.1:
 * any method, body and headers, with the status and the whole body
 * returned, and server-sent event streams split into their data lines.
 */
#ifndef MR_TEST_HTTP_PROBE_H
#define MR_TEST_HTTP_PROBE_H

#include <stdbool.h>
#include <stddef.h>

/* The outcome of one request. */
typedef struct probe_reply {
    long status;        /* HTTP status; 0 when no reply arrived */
    char *body;         /* NUL-terminated, or NULL when none arrived */
    size_t size;
    char allow[64];     /* the Allow header, "" when absent */
    char content_type[64];
    int curl_code;      /* CURLcode; 0 when the transfer succeeded */
    double seconds;     /* wall time of the request */
} probe_reply;

/*
 * Sends method to url with body (size bytes; NULL for none). chunked sends
 * the body with Transfer-Encoding: chunked instead of Content-Length.
 * timeout_s limits the whole request. Always fills reply; free it with
 * probe_reply_free().
 */
void probe_request(const char *method, const char *url, const char *body, size_t size,
                   bool chunked, double timeout_s, probe_reply *reply);

/* The same with one more header line, such as "Expect: 100-continue"
 * (NULL for none). */
void probe_request_with_header(const char *method, const char *url, const char *body,
                               size_t size, bool chunked, const char *header,
                               double timeout_s, probe_reply *reply);

void probe_reply_free(probe_reply *reply);

/* Returns whether the reply has a body that contains text. */
bool probe_body_contains(const probe_reply *reply, const char *text);

/*
 * Splits an event stream into its "data: " payloads. Stores at most cap
 * pointers into body (which it modifies) and returns how many events the
 * stream has.
 */
int probe_split_events(char *body, char **events, int cap);

/* Returns the path of the multiround command-line tool next to the test
 * executables (../multiround from the test's folder), or the value of
 * MR_CLI_PATH when set. */
const char *probe_cli_path(void);

#endif /* MR_TEST_HTTP_PROBE_H */
