/*
 * `multiround serve` and `multiround chat` as child processes: the server
 * listens on 127.0.0.1 with an OS-picked port (read from its log), exits
 * with status 0 soon after SIGTERM or SIGINT even with a request running,
 * and the chat command gives the same replies over HTTP as in-process.
 * The tool is found at ../multiround beside the test executables, or at
 * $MR_CLI_PATH.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_probe.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static void sleep_s(double seconds) {
    struct timespec wait = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&wait, NULL);
}

/* A server child process and the file that receives its log. */
typedef struct child_server {
    pid_t pid;
    char log_path[64];
    char url[64];
} child_server;

/* Starts `multiround serve` with extra options (NULL-terminated) and
 * waits up to 10 s for its "listening on" line. */
static bool start_child(child_server *child, const char *const *extra) {
    memset(child, 0, sizeof *child);
    snprintf(child->log_path, sizeof child->log_path, "/tmp/mr_serve_test_XXXXXX");
    int log_fd = mkstemp(child->log_path);
    if (log_fd < 0) {
        mr_test_fail(__FILE__, __LINE__, "mkstemp failed: %s", strerror(errno));
        return false;
    }

    const char *argv[32] = {probe_cli_path(), "--threads", "1", "serve", "-m", STORIES_PATH,
                            "--port", "0"};
    int argc = 8;
    for (int i = 0; extra[i] != NULL && argc < 31; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;

    child->pid = fork();
    if (child->pid == 0) {
        dup2(log_fd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(log_fd);

    double deadline = now_s() + 10.0;
    while (now_s() < deadline) {
        FILE *log = fopen(child->log_path, "r");
        char line[512];
        while (log != NULL && fgets(line, sizeof line, log) != NULL) {
            const char *at = strstr(line, "listening on http://127.0.0.1:");
            int port = 0;
            if (at != NULL && sscanf(at, "listening on http://127.0.0.1:%d", &port) == 1) {
                snprintf(child->url, sizeof child->url, "http://127.0.0.1:%d/v1", port);
            }
        }
        if (log != NULL) {
            fclose(log);
        }
        if (child->url[0] != '\0') {
            return true;
        }
        int status;
        if (waitpid(child->pid, &status, WNOHANG) == child->pid) {
            mr_test_fail(__FILE__, __LINE__, "%s serve exited before listening; see %s",
                         argv[0], child->log_path);
            child->pid = 0;
            return false;
        }
        sleep_s(0.05);
    }
    mr_test_fail(__FILE__, __LINE__, "no 'listening on' line in %s within 10 s",
                 child->log_path);
    kill(child->pid, SIGKILL);
    waitpid(child->pid, NULL, 0);
    child->pid = 0;
    return false;
}

/* Waits up to timeout_s for the child to exit; returns its wait status,
 * or -1 after killing it when it did not exit in time. */
static int wait_exit(pid_t pid, double timeout_s) {
    double deadline = now_s() + timeout_s;
    int status = 0;
    while (now_s() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return status;
        }
        sleep_s(0.02);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Returns whether the child's log contains text. */
static bool log_contains(const child_server *child, const char *text) {
    FILE *log = fopen(child->log_path, "r");
    char line[1024];
    bool found = false;
    while (log != NULL && !found && fgets(line, sizeof line, log) != NULL) {
        found = strstr(line, text) != NULL;
    }
    if (log != NULL) {
        fclose(log);
    }
    return found;
}

/* A request sent on its own thread. */
typedef struct background_call {
    char url[128];
    const char *body;
    probe_reply reply;
    pthread_t thread;
} background_call;

static void *background_main(void *arg) {
    background_call *call = arg;
    probe_request("POST", call->url, call->body, strlen(call->body), false, 10.0, &call->reply);
    return NULL;
}

static void sigterm_mid_request_exits_zero(void) {
    const char *extra[] = {"--token-delay-ms", "20", "--shutdown-timeout", "0.3", NULL};
    child_server child;
    if (!start_child(&child, extra)) {
        return;
    }
    char url[128];
    snprintf(url, sizeof url, "%s/models", child.url);
    probe_reply models;
    probe_request("GET", url, NULL, 0, false, 5.0, &models);
    CHECK_INT_EQ(models.status, 200);
    probe_reply_free(&models);

    /* 200 pieces at 20 ms would take 4 s. */
    background_call call = {.body = "{\"prompt\":\"Once\",\"max_tokens\":200,\"temperature\":0}"};
    snprintf(call.url, sizeof call.url, "%s/completions", child.url);
    pthread_create(&call.thread, NULL, background_main, &call);
    sleep_s(1.0);

    double start = now_s();
    kill(child.pid, SIGTERM);
    int status = wait_exit(child.pid, 5.0);
    double seconds = now_s() - start;
    pthread_join(call.thread, NULL);

    CHECK(status != -1);
    CHECK(WIFEXITED(status));
    CHECK_INT_EQ(WEXITSTATUS(status), 0);
    CHECK(seconds < 2.0);
    CHECK_INT_EQ(call.reply.curl_code, 0);
    CHECK_INT_EQ(call.reply.status, 503);
    CHECK(probe_body_contains(&call.reply, "shutting down"));
    CHECK(log_contains(&child, "received SIGTERM"));
    CHECK(log_contains(&child, "GET /v1/models 200"));
    probe_reply_free(&call.reply);
    unlink(child.log_path);
}

static void sigint_idle_exits_zero(void) {
    const char *extra[] = {NULL};
    child_server child;
    if (!start_child(&child, extra)) {
        return;
    }
    double start = now_s();
    kill(child.pid, SIGINT);
    int status = wait_exit(child.pid, 5.0);
    CHECK(status != -1);
    CHECK(WIFEXITED(status));
    CHECK_INT_EQ(WEXITSTATUS(status), 0);
    CHECK(now_s() - start < 1.0);
    CHECK(log_contains(&child, "received SIGINT"));
    CHECK(log_contains(&child, "stopped in"));
    unlink(child.log_path);
}

/* Runs the tool with argv (NULL-terminated, argv[0] ignored) and input on
 * stdin. Stores stdout and stderr, each NUL-terminated and at most cap - 1
 * bytes. Returns the exit code, or -1 when the tool ran past 20 s. */
static int run_tool(const char *const *argv, const char *input, char *out, char *errors,
                    size_t cap) {
    char in_path[] = "/tmp/mr_chat_in_XXXXXX";
    char out_path[] = "/tmp/mr_chat_out_XXXXXX";
    char err_path[] = "/tmp/mr_chat_err_XXXXXX";
    int in_fd = mkstemp(in_path);
    int out_fd = mkstemp(out_path);
    int err_fd = mkstemp(err_path);
    if (write(in_fd, input, strlen(input)) != (ssize_t)strlen(input)) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s", in_path);
    }
    lseek(in_fd, 0, SEEK_SET);

    const char *full[32];
    full[0] = probe_cli_path();
    int argc = 1;
    for (int i = 1; argv[i] != NULL && argc < 31; i++) {
        full[argc++] = argv[i];
    }
    full[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in_fd, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(err_fd, STDERR_FILENO);
        execv(full[0], (char *const *)full);
        _exit(127);
    }
    int status = wait_exit(pid, 20.0);

    char *targets[2] = {out, errors};
    int fds[2] = {out_fd, err_fd};
    for (int i = 0; i < 2; i++) {
        lseek(fds[i], 0, SEEK_SET);
        ssize_t n = read(fds[i], targets[i], cap - 1);
        targets[i][n > 0 ? n : 0] = '\0';
        close(fds[i]);
    }
    close(in_fd);
    unlink(in_path);
    unlink(out_path);
    unlink(err_path);
    return status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void chat_over_http_matches_local(void) {
    const char *extra[] = {"--chat-template", "chatml", NULL};
    child_server child;
    if (!start_child(&child, extra)) {
        return;
    }

    /* Turn 3 repeats turn 1 after /reset, so its reply is the same. */
    const char *input = "A dog\nA cat\n/reset\nA dog\n";
    static char http_out[8192], http_err[8192], local_out[8192], local_err[8192];
    const char *over_http[] = {"", "chat", "--url", child.url, "--model", "stories260K",
                               "--temp", "0", "-n", "15", NULL};
    const char *in_process[] = {"", "--threads", "1", "chat", "-m", STORIES_PATH,
                                "--chat-template", "chatml", "--temp", "0", "-n", "15", NULL};
    CHECK_INT_EQ(run_tool(over_http, input, http_out, http_err, sizeof http_out), 0);
    CHECK_INT_EQ(run_tool(in_process, input, local_out, local_err, sizeof local_out), 0);

    CHECK(strcmp(http_out, local_out) == 0);

    /* Replies may contain newlines, so a run of the first turn alone gives
     * the first reply. The full output starts and ends with it. */
    static char single_out[8192], single_err[8192];
    CHECK_INT_EQ(run_tool(over_http, "A dog\n", single_out, single_err, sizeof single_out), 0);
    size_t single_len = strlen(single_out);
    size_t all_len = strlen(http_out);
    CHECK(single_len > 1);
    CHECK(all_len > 2 * single_len);
    CHECK(strncmp(http_out, single_out, single_len) == 0);
    CHECK(all_len >= single_len &&
          strcmp(http_out + all_len - single_len, single_out) == 0);
    CHECK(strstr(http_err, "[new conversation]") != NULL);
    CHECK(strstr(http_err, "completion tokens, finish") != NULL);
    CHECK(strstr(local_err, "completion tokens, finish") != NULL);

    kill(child.pid, SIGTERM);
    int status = wait_exit(child.pid, 5.0);
    CHECK(status != -1);
    CHECK(WIFEXITED(status));
    CHECK_INT_EQ(WEXITSTATUS(status), 0);
    unlink(child.log_path);

    /* A failed turn ends a non-interactive run with exit code 1: nothing
     * listens on the server's port any more. */
    CHECK_INT_EQ(run_tool(over_http, "hello\n", http_out, http_err, sizeof http_out), 1);
    CHECK(strstr(http_err, "the request failed") != NULL);
}

int main(void) {
    const char *cli = probe_cli_path();
    if (cli == NULL || access(cli, X_OK) != 0) {
        fprintf(stderr, "the multiround tool is not at %s; build it or set MR_CLI_PATH\n",
                cli != NULL ? cli : "(unknown)");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    MR_RUN(sigterm_mid_request_exits_zero);
    MR_RUN(sigint_idle_exits_zero);
    MR_RUN(chat_over_http_matches_local);
    return mr_test_finish();
}
