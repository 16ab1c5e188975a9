/*
 * A fake OpenAI-compatible server for the llm tests, built on
 * libmicrohttpd. It listens on 127.0.0.1 on a port the OS picks and replies
 * to each request as a test scripts it. It records what the client sent
 * and counts how many requests were in flight at once.
 *
 * Request i (in arrival order) gets script[min(i, n_script - 1)], so a
 * one-entry script answers every request the same way.
 */
#ifndef MR_TEST_FAKE_SERVER_H
#define MR_TEST_FAKE_SERVER_H

#include <stdbool.h>

/* Token counts that every generated reply reports in "usage". */
#define FAKE_PROMPT_TOKENS 11
#define FAKE_COMPLETION_TOKENS 7

/* Maximum number of requests whose details the server records. */
#define FAKE_MAX_RECORDED 64

/*
 * One scripted reply. With body NULL the server generates a valid reply
 * whose text is "echo: " followed by the last message's content (chat) or
 * the prompt (completion). A stop string cuts the text before it, with
 * finish_reason "stop". Otherwise max_tokens cuts it to that many words,
 * with finish_reason "length". A content containing "[fail]" gets HTTP 400
 * instead. The reply's "model" is the requested model plus ":served".
 */
typedef struct fake_reply {
    int status;               /* HTTP status; 0 means 200 */
    const char *body;         /* sent as is, or NULL to generate one */
    const char *retry_after;  /* Retry-After header value, or NULL */
    int delay_ms;             /* wait before replying */
    bool close_mid_body;      /* announce the full length, send half, close */
    bool omit_usage;          /* generated reply without "usage" */
} fake_reply;

typedef struct fake_server fake_server;

/* Starts the server; script is copied (its strings are borrowed). Returns
 * NULL and prints why when the server cannot start. */
fake_server *fake_server_start(const fake_reply *script, int n_script);

/* Stops the server, ending any scripted waits early. server may be NULL. */
void fake_server_stop(fake_server *server);

/* "http://127.0.0.1:<port>/v1". */
const char *fake_server_base_url(const fake_server *server);

/* Requests received so far. */
int fake_server_request_count(fake_server *server);

/* Largest number of requests that were being handled at once. */
int fake_server_max_in_flight(fake_server *server);

/* Details of request i in arrival order, or NULL / -1 when i was not
 * recorded. The strings live until fake_server_stop(). */
const char *fake_server_request_path(fake_server *server, int i);
const char *fake_server_request_body(fake_server *server, int i);
const char *fake_server_request_authorization(fake_server *server, int i);
double fake_server_request_time_s(fake_server *server, int i);

/* Returns a 127.0.0.1 port with no listener: one the OS handed out and
 * that was closed again. */
int fake_unused_port(void);

#endif /* MR_TEST_FAKE_SERVER_H */
