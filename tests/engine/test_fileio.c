/*
 * Atomic writes and bounded reads: the target changes only when a write
 * succeeds, failures leave no temporary file and name the path, and reads
 * honour their size limit.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "test.h"

/* A fresh folder under $TMPDIR (or /tmp) for one test. */
static void make_folder(char *folder, size_t size) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, size, "%s/mr_fileio_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mkdtemp(%s) failed: %s", folder, strerror(errno));
    }
}

/* Number of entries in folder other than . and ..; their names are
 * printed when listing is true. */
static int count_entries(const char *folder, bool listing) {
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return -1;
    }
    int count = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            if (listing) {
                fprintf(stderr, "  %s/%s\n", folder, entry->d_name);
            }
            count++;
        }
    }
    closedir(dir);
    return count;
}

/* Checks that folder contains exactly expected entries, listing them if not. */
#define CHECK_ENTRIES(folder, expected)                                    \
    do {                                                                   \
        int count_ = count_entries(folder, false);                         \
        CHECK_INT_EQ(count_, expected);                                    \
        if (count_ != (expected)) {                                        \
            count_entries(folder, true);                                   \
        }                                                                  \
    } while (0)

/* Removes the files (and empty subfolders) in folder, then folder. */
static void remove_folder(const char *folder) {
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return;
    }
    char path[512];
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
            if (unlink(path) != 0) {
                rmdir(path);
            }
        }
    }
    closedir(dir);
    rmdir(folder);
}

/* Reads path and checks that its content is exactly text. */
static void check_content(const char *path, const char *text) {
    void *data = NULL;
    size_t size = 0;
    mr_error err;
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &data, &size, &err), MR_OK);
    CHECK_INT_EQ(size, strlen(text));
    if (data != NULL) {
        CHECK(memcmp(data, text, strlen(text)) == 0);
        CHECK_INT_EQ(((char *)data)[size], '\0');
    }
    free(data);
}

/* ------------------------------------------------------------------------ */

static void atomic_write_creates_and_replaces(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/model.bin", folder);
    mr_error err;

    CHECK_STATUS(mr_file_write_atomic(path, "first", 5, &err), MR_OK);
    check_content(path, "first");
    CHECK_STATUS(mr_file_write_atomic(path, "second version", 14, &err), MR_OK);
    check_content(path, "second version");
    CHECK_ENTRIES(folder, 1);

    /* An empty file is a valid result. */
    CHECK_STATUS(mr_file_write_atomic(path, NULL, 0, &err), MR_OK);
    check_content(path, "");
    remove_folder(folder);
}

static void atomic_write_applies_umask(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/mode.bin", folder);
    mode_t previous = umask(022);
    CHECK_STATUS(mr_file_write_atomic(path, "x", 1, NULL), MR_OK);
    umask(previous);

    struct stat info;
    CHECK_INT_EQ(stat(path, &info), 0);
    CHECK_INT_EQ(info.st_mode & 0777, 0644);
    remove_folder(folder);
}

static void atomic_write_relative_path(void) {
    char folder[256], cwd[1024];
    make_folder(folder, sizeof folder);
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_INT_EQ(chdir(folder), 0);
    mr_status status = mr_file_write_atomic("relative.txt", "here", 4, NULL);
    CHECK_INT_EQ(chdir(cwd), 0);

    CHECK_STATUS(status, MR_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/relative.txt", folder);
    check_content(path, "here");
    CHECK_ENTRIES(folder, 1);
    remove_folder(folder);
}

static void atomic_write_missing_folder(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/no-such-folder/model.bin", folder);
    mr_error err;
    mr_error_clear(&err);

    CHECK_STATUS(mr_file_write_atomic(path, "data", 4, &err), MR_ERR_IO);
    CHECK_STATUS(err.status, MR_ERR_IO);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(strstr(err.message, strerror(ENOENT)) != NULL);
    CHECK_ENTRIES(folder, 0);
    remove_folder(folder);
}

static void atomic_write_rejects_bad_paths(void) {
    mr_error err;
    CHECK_STATUS(mr_file_write_atomic("", "x", 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_file_write_atomic("/tmp/", "x", 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "/tmp/") != NULL);
}

static void writer_streams_pieces(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/stream.txt", folder);
    mr_error err;

    mr_file_writer *writer = NULL;
    CHECK_STATUS(mr_file_writer_open(path, &writer, &err), MR_OK);
    CHECK_STATUS(mr_file_writer_write(writer, "alpha ", 6, &err), MR_OK);
    CHECK_STATUS(mr_file_writer_write(writer, "beta ", 5, &err), MR_OK);
    CHECK_STATUS(mr_file_writer_write(writer, "gamma", 5, &err), MR_OK);
    CHECK_INT_EQ(mr_file_writer_size(writer), 16);

    /* Until the commit the target does not exist; only the temporary file does. */
    CHECK(access(path, F_OK) != 0);
    CHECK_ENTRIES(folder, 1);
    CHECK_STATUS(mr_file_writer_commit(writer, &err), MR_OK);
    check_content(path, "alpha beta gamma");
    CHECK_ENTRIES(folder, 1);
    remove_folder(folder);
}

static void writer_abort_keeps_target(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/keep.txt", folder);
    CHECK_STATUS(mr_file_write_atomic(path, "old", 3, NULL), MR_OK);

    mr_file_writer *writer = NULL;
    CHECK_STATUS(mr_file_writer_open(path, &writer, NULL), MR_OK);
    CHECK_STATUS(mr_file_writer_write(writer, "new content", 11, NULL), MR_OK);
    CHECK_ENTRIES(folder, 2);
    mr_file_writer_abort(writer);

    check_content(path, "old");
    CHECK_ENTRIES(folder, 1);
    mr_file_writer_abort(NULL);
    remove_folder(folder);
}

static void failed_rename_keeps_target(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);

    /* A non-empty folder as the target: rename() cannot replace it. */
    snprintf(path, sizeof path, "%s/target", folder);
    CHECK_INT_EQ(mkdir(path, 0700), 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/inside.txt", path);
    CHECK_STATUS(mr_file_write_atomic(inner, "inner", 5, NULL), MR_OK);

    mr_error err;
    CHECK_STATUS(mr_file_write_atomic(path, "data", 4, &err), MR_ERR_IO);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(strstr(err.message, "renaming") != NULL);
    CHECK_ENTRIES(folder, 1);
    CHECK_ENTRIES(path, 1);
    check_content(inner, "inner");

    unlink(inner);
    remove_folder(folder);
}

static void failed_write_removes_temp_file(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/big.bin", folder);
    CHECK_STATUS(mr_file_write_atomic(path, "old", 3, NULL), MR_OK);

    /* Limit this process to 1000-byte files so that write() fails with
     * EFBIG; SIGXFSZ would otherwise end the process. */
    struct rlimit saved;
    CHECK_INT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    struct rlimit limited = saved;
    limited.rlim_cur = 1000;
    void (*previous)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);

    static char payload[4096];
    memset(payload, 'x', sizeof payload);
    mr_error err;
    mr_status status = mr_file_write_atomic(path, payload, sizeof payload, &err);

    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, previous);

    CHECK_STATUS(status, MR_ERR_IO);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(strstr(err.message, strerror(EFBIG)) != NULL);
    check_content(path, "old");
    CHECK_ENTRIES(folder, 1);
    remove_folder(folder);
}

static void read_all_enforces_limit(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/hundred.bin", folder);
    char bytes[100];
    memset(bytes, 'a', sizeof bytes);
    CHECK_STATUS(mr_file_write_atomic(path, bytes, sizeof bytes, NULL), MR_OK);

    void *data = (void *)1;
    size_t size = 7;
    mr_error err;
    CHECK_STATUS(mr_file_read_all(path, 99, &data, &size, &err), MR_ERR_FORMAT);
    CHECK(data == NULL);
    CHECK_INT_EQ(size, 0);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(strstr(err.message, "100 bytes") != NULL);
    CHECK(strstr(err.message, "99 bytes") != NULL);

    CHECK_STATUS(mr_file_read_all(path, 100, &data, &size, &err), MR_OK);
    CHECK_INT_EQ(size, 100);
    free(data);
    remove_folder(folder);
}

static void read_all_missing_file(void) {
    void *data = NULL;
    size_t size = 0;
    mr_error err;
    const char *path = "/nonexistent/multiround/missing.bin";
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &data, &size, &err), MR_ERR_IO);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(strstr(err.message, strerror(ENOENT)) != NULL);
    CHECK(data == NULL);
}

static void read_all_unsized_files(void) {
    /* /proc files report size 0, so the buffer grows while reading. */
    void *data = NULL;
    size_t size = 0;
    mr_error err;
    CHECK_STATUS(mr_file_read_all("/proc/self/status", 1 << 20, &data, &size, &err), MR_OK);
    CHECK(size > 0);
    CHECK(data != NULL && strstr(data, "Name:") != NULL);
    free(data);

    CHECK_STATUS(mr_file_read_all("/proc/self/status", 10, &data, &size, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "/proc/self/status") != NULL);
    CHECK(data == NULL);
}

/* Creates folder/name with a few bytes. */
static void touch(const char *folder, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    CHECK_STATUS(mr_file_write_atomic(path, "x", 1, NULL), MR_OK);
}

/* Returns the id of a child process that has ended and been waited for. */
static long ended_process(void) {
    pid_t child = fork();
    if (child == 0) {
        _exit(0);
    }
    CHECK(child > 0);
    CHECK_INT_EQ(waitpid(child, NULL, 0), child);
    return (long)child;
}

static void folder_lock_excludes_others(void) {
    char folder[256], pid[32];
    make_folder(folder, sizeof folder);
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    mr_error err;

    mr_folder_lock *first = NULL, *second = NULL;
    CHECK_STATUS(mr_folder_lock_take(folder, &first, &err), MR_OK);
    CHECK(first != NULL);

    /* A second lock fails, also from the same process, and names the
     * folder and the owner. */
    CHECK_STATUS(mr_folder_lock_take(folder, &second, &err), MR_ERR_STATE);
    CHECK(second == NULL);
    CHECK(strstr(err.message, folder) != NULL);
    CHECK(strstr(err.message, pid) != NULL);

    /* Released, the folder can be locked again. */
    mr_folder_lock_release(first);
    CHECK_STATUS(mr_folder_lock_take(folder, &second, &err), MR_OK);
    mr_folder_lock_release(second);
    mr_folder_lock_release(NULL);
    remove_folder(folder);
}

static void folder_lock_ends_with_process(void) {
    char folder[256];
    make_folder(folder, sizeof folder);

    /* A child locks the folder and exits without releasing it, as a
     * killed run does. */
    pid_t child = fork();
    if (child == 0) {
        mr_folder_lock *lock = NULL;
        _exit(mr_folder_lock_take(folder, &lock, NULL) == MR_OK ? 0 : 1);
    }
    CHECK(child > 0);
    int wait_status = 0;
    CHECK_INT_EQ(waitpid(child, &wait_status, 0), child);
    CHECK(WIFEXITED(wait_status));
    CHECK_INT_EQ(WEXITSTATUS(wait_status), 0);

    mr_folder_lock *lock = NULL;
    mr_error err;
    CHECK_STATUS(mr_folder_lock_take(folder, &lock, &err), MR_OK);
    mr_folder_lock_release(lock);
    CHECK_ENTRIES(folder, 1); /* the .lock file */
    remove_folder(folder);
}

static void folder_lock_missing_folder(void) {
    mr_folder_lock *lock = NULL;
    mr_error err;
    CHECK_STATUS(mr_folder_lock_take("/nonexistent/multiround/run", &lock, &err), MR_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/multiround/run/.lock") != NULL);
    CHECK(lock == NULL);
}

/* sysfs never lets a file be created, even by root, so /sys stands for a
 * read-only folder: the lock comes back empty with a warning. */
static void folder_lock_read_only_folder(void) {
    if (access("/sys/kernel", F_OK) != 0) {
        return; /* no sysfs here */
    }
    mr_folder_lock *lock = NULL;
    mr_error err;
    CHECK_STATUS(mr_folder_lock_take("/sys", &lock, &err), MR_OK);
    CHECK(lock != NULL);
    mr_folder_lock_release(lock);
}

static void stale_temps_removed(void) {
    char folder[256], name[128];
    make_folder(folder, sizeof folder);

    /* Every name of the temporary form goes, whichever process made it:
     * under the lock no other writer is at work, and a killed run's
     * process id may equal this one's (PID 1 in a container). */
    snprintf(name, sizeof name, ".model.safetensors.tmp.%ld.3", ended_process());
    touch(folder, name);
    snprintf(name, sizeof name, ".model.safetensors.tmp.%ld.4", (long)getpid());
    touch(folder, name);
    touch(folder, ".a.tmp.b.tmp.77.12");

    /* Names of another form stay. */
    const char *const kept[] = {"model.safetensors.tmp.77.6", ".model.tmp.77.",
                                ".model.tmp.77.7x", ".tmp.77.8", ".model.tmp.-5.9",
                                ".model.tmp. 5.9", ".model.tmp.+5.9", ".model.tmp..9",
                                "model.safetensors"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        touch(folder, kept[i]);
    }

    CHECK_INT_EQ(mr_folder_remove_stale_temps(folder), 3);
    CHECK_ENTRIES(folder, (int)(sizeof kept / sizeof kept[0]));
    CHECK_INT_EQ(mr_folder_remove_stale_temps(folder), 0);
    CHECK_INT_EQ(mr_folder_remove_stale_temps("/nonexistent/multiround/run"), -1);
    remove_folder(folder);
}

int main(void) {
    MR_RUN(atomic_write_creates_and_replaces);
    MR_RUN(atomic_write_applies_umask);
    MR_RUN(atomic_write_relative_path);
    MR_RUN(atomic_write_missing_folder);
    MR_RUN(atomic_write_rejects_bad_paths);
    MR_RUN(writer_streams_pieces);
    MR_RUN(writer_abort_keeps_target);
    MR_RUN(failed_rename_keeps_target);
    MR_RUN(failed_write_removes_temp_file);
    MR_RUN(read_all_enforces_limit);
    MR_RUN(read_all_missing_file);
    MR_RUN(read_all_unsized_files);
    MR_RUN(folder_lock_excludes_others);
    MR_RUN(folder_lock_ends_with_process);
    MR_RUN(folder_lock_missing_folder);
    MR_RUN(folder_lock_read_only_folder);
    MR_RUN(stale_temps_removed);
    return mr_test_finish();
}
