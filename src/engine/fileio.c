/*
 * Atomic file writes (temporary file, fsync, rename, folder fsync),
 * whole-file reads with a size limit, path joining and folder
 * creation, folder locks and the removal of stale temporary files.
 * POSIX only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multiround/fileio.h"

/* Attempts at finding an unused temporary name before giving up. */
#define TEMP_NAME_ATTEMPTS 100

struct mr_file_writer {
    int fd;
    char *path;       /* the target */
    char *temp_path;  /* the temporary file in the target's folder */
    char *folder;     /* the target's folder, flushed after the rename */
    size_t size;      /* bytes written so far */
    mr_status failed; /* MR_OK until a write fails */
};

/* Distinguishes temporary files of concurrent writers in one process. */
static atomic_uint temp_counter;

/* Returns a malloc'ed copy of the first length bytes of text, or NULL. */
static char *copy_prefix(const char *text, size_t length) {
    char *copy = malloc(length + 1);
    if (copy != NULL) {
        memcpy(copy, text, length);
        copy[length] = '\0';
    }
    return copy;
}

/* Frees the writer's memory without touching the disk. */
static void writer_release(mr_file_writer *writer) {
    free(writer->path);
    free(writer->temp_path);
    free(writer->folder);
    free(writer);
}

/* Closes the temporary file (if open), removes it and frees the writer. */
static void writer_discard(mr_file_writer *writer) {
    if (writer->fd >= 0) {
        close(writer->fd);
    }
    unlink(writer->temp_path);
    writer_release(writer);
}

/*
 * Creates a temporary file next to writer->path, trying new names while
 * one exists. Sets writer->fd and writer->temp_path.
 */
static mr_status create_temp_file(mr_file_writer *writer, const char *base,
                                  mr_error *err) {
    size_t temp_size = strlen(writer->folder) + strlen(base) + 64;
    writer->temp_path = malloc(temp_size);
    if (writer->temp_path == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory writing '%s'",
                            writer->path);
    }

    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        unsigned counter = atomic_fetch_add(&temp_counter, 1u);
        snprintf(writer->temp_path, temp_size, "%s/.%s.tmp.%ld.%u", writer->folder, base,
                 (long)getpid(), counter);
        writer->fd = open(writer->temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (writer->fd >= 0) {
            return MR_OK;
        }
        if (errno != EEXIST) {
            return mr_error_set(err, MR_ERR_IO,
                                "fileio: cannot create temporary file '%s' for '%s': %s; "
                                "check that the folder exists and is writable",
                                writer->temp_path, writer->path, strerror(errno));
        }
    }
    return mr_error_set(err, MR_ERR_IO,
                        "fileio: cannot create a temporary file for '%s': %d names like "
                        "'%s' already exist; remove stale temporary files from the folder",
                        writer->path, TEMP_NAME_ATTEMPTS, writer->temp_path);
}

mr_status mr_file_writer_open(const char *path, mr_file_writer **out, mr_error *err) {
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "fileio: the path to write is empty");
    }

    /* Split path into its folder and file name. */
    const char *slash = strrchr(path, '/');
    const char *base = slash == NULL ? path : slash + 1;
    if (base[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "fileio: cannot write '%s' because it names a folder; "
                            "add a file name", path);
    }

    mr_file_writer *writer = calloc(1, sizeof *writer);
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory writing '%s'", path);
    }
    writer->fd = -1;
    writer->path = copy_prefix(path, strlen(path));
    if (slash == NULL) {
        writer->folder = copy_prefix(".", 1);
    } else if (slash == path) {
        writer->folder = copy_prefix("/", 1);
    } else {
        writer->folder = copy_prefix(path, (size_t)(slash - path));
    }
    if (writer->path == NULL || writer->folder == NULL) {
        writer_release(writer);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory writing '%s'", path);
    }

    mr_status status = create_temp_file(writer, base, err);
    if (status != MR_OK) {
        writer_release(writer);
        return status;
    }
    *out = writer;
    return MR_OK;
}

mr_status mr_file_writer_write(mr_file_writer *writer, const void *data, size_t size,
                               mr_error *err) {
    if (writer->failed != MR_OK) {
        return mr_error_set(err, writer->failed,
                            "fileio: an earlier write to '%s' failed; abort and retry",
                            writer->temp_path);
    }

    const char *bytes = data;
    size_t done = 0;
    while (done < size) {
        ssize_t written = write(writer->fd, bytes + done, size - done);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            int saved = written < 0 ? errno : EIO;
            writer->failed = MR_ERR_IO;
            return mr_error_set(err, MR_ERR_IO,
                                "fileio: writing '%s' (temporary file for '%s') failed at "
                                "byte %zu: %s",
                                writer->temp_path, writer->path, writer->size + done,
                                strerror(saved));
        }
        done += (size_t)written;
    }
    writer->size += size;
    return MR_OK;
}

/* Flushes folder so that a rename inside it is durable. Filesystems that
 * cannot sync a folder (fsync gives EINVAL) count as success. */
static mr_status sync_folder(const char *folder, const char *path, mr_error *err) {
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return mr_error_set(err, MR_ERR_IO,
                            "fileio: '%s' was replaced but its folder '%s' cannot be opened "
                            "to flush the rename: %s",
                            path, folder, strerror(errno));
    }
    int result = fsync(fd);
    int saved = errno;
    close(fd);
    if (result != 0 && saved != EINVAL) {
        return mr_error_set(err, MR_ERR_IO,
                            "fileio: '%s' was replaced but flushing its folder '%s' failed: "
                            "%s; the rename may be lost on a crash",
                            path, folder, strerror(saved));
    }
    return MR_OK;
}

mr_status mr_file_writer_commit(mr_file_writer *writer, mr_error *err) {
    if (writer->failed != MR_OK) {
        mr_status status = mr_error_set(err, writer->failed,
                                        "fileio: an earlier write to '%s' failed, so '%s' was "
                                        "not replaced",
                                        writer->temp_path, writer->path);
        writer_discard(writer);
        return status;
    }

    if (fsync(writer->fd) != 0) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "fileio: flushing '%s' to disk failed: %s",
                                        writer->temp_path, strerror(errno));
        writer_discard(writer);
        return status;
    }

    int result = close(writer->fd);
    writer->fd = -1;
    if (result != 0) {
        mr_status status = mr_error_set(err, MR_ERR_IO, "fileio: closing '%s' failed: %s",
                                        writer->temp_path, strerror(errno));
        writer_discard(writer);
        return status;
    }

    if (rename(writer->temp_path, writer->path) != 0) {
        mr_status status = mr_error_set(err, MR_ERR_IO,
                                        "fileio: renaming '%s' to '%s' failed: %s; the target "
                                        "was left unchanged",
                                        writer->temp_path, writer->path, strerror(errno));
        writer_discard(writer);
        return status;
    }

    mr_status status = sync_folder(writer->folder, writer->path, err);
    writer_release(writer);
    return status;
}

void mr_file_writer_abort(mr_file_writer *writer) {
    if (writer != NULL) {
        writer_discard(writer);
    }
}

size_t mr_file_writer_size(const mr_file_writer *writer) {
    return writer->size;
}

mr_status mr_file_write_atomic(const char *path, const void *data, size_t size,
                               mr_error *err) {
    mr_file_writer *writer = NULL;
    mr_status status = mr_file_writer_open(path, &writer, err);
    if (status != MR_OK) {
        return status;
    }

    status = mr_file_writer_write(writer, data, size, err);
    if (status != MR_OK) {
        mr_file_writer_abort(writer);
        return status;
    }
    return mr_file_writer_commit(writer, err);
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

/* Reads from fd until end of file into *buffer, growing it as needed and
 * failing once more than max_size bytes arrive. */
static mr_status read_stream(int fd, const char *path, size_t max_size, char **buffer,
                             size_t *capacity, size_t *length, mr_error *err) {
    for (;;) {
        if (*length + 1 >= *capacity) {
            size_t grown = *capacity < 4096 ? 4096 : *capacity * 2;
            if (grown > max_size + 2) {
                grown = max_size + 2;
            }
            char *bigger = realloc(*buffer, grown);
            if (bigger == NULL) {
                return mr_error_set(err, MR_ERR_NO_MEMORY,
                                    "fileio: out of memory reading '%s' after %zu bytes", path,
                                    *length);
            }
            *buffer = bigger;
            *capacity = grown;
        }

        ssize_t got = read(fd, *buffer + *length, *capacity - 1 - *length);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return mr_error_set(err, MR_ERR_IO, "fileio: reading '%s' failed at byte %zu: %s",
                                path, *length, strerror(errno));
        }
        if (got == 0) {
            return MR_OK;
        }
        *length += (size_t)got;
        if (*length > max_size) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "fileio: '%s' is larger than the limit of %zu bytes; check the "
                                "path or raise the limit",
                                path, max_size);
        }
    }
}

mr_status mr_file_read_all(const char *path, size_t max_size, void **data, size_t *size,
                           mr_error *err) {
    *data = NULL;
    *size = 0;
    if (max_size > SIZE_MAX - 2) {
        max_size = SIZE_MAX - 2;
    }

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return mr_error_set(err, MR_ERR_IO, "fileio: cannot open '%s': %s", path,
                            strerror(errno));
    }

    /* A regular file reports its size, so an oversized one is rejected before any
     * allocation and the buffer is sized once. Pipes and /proc files report 0 and
     * grow the buffer as they are read. */
    struct stat info;
    size_t capacity = 0;
    if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode)) {
        if ((uint64_t)info.st_size > (uint64_t)max_size) {
            close(fd);
            return mr_error_set(err, MR_ERR_FORMAT,
                                "fileio: '%s' is %lld bytes, larger than the limit of %zu "
                                "bytes; check the path or raise the limit",
                                path, (long long)info.st_size, max_size);
        }
        capacity = (size_t)info.st_size + 2;
    }

    char *buffer = capacity > 0 ? malloc(capacity) : NULL;
    if (capacity > 0 && buffer == NULL) {
        close(fd);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory reading '%s' (%zu bytes)",
                            path, capacity - 2);
    }
    size_t length = 0;
    mr_status status = read_stream(fd, path, max_size, &buffer, &capacity, &length, err);
    close(fd);
    if (status != MR_OK) {
        free(buffer);
        return status;
    }

    if (buffer == NULL) {
        buffer = malloc(1);
        if (buffer == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory reading '%s'", path);
        }
    }
    buffer[length] = '\0';
    *data = buffer;
    *size = length;
    return MR_OK;
}

mr_status mr_path_join(char *out, size_t size, const char *dir, const char *name,
                       mr_error *err) {
    if (out == NULL || dir == NULL || name == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "fileio: path_join needs an output buffer, a folder and a name");
    }
    int length = snprintf(out, size, "%s/%s", dir, name);
    if (length < 0 || (size_t)length >= size) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "fileio: path '%s/%s' is longer than %zu bytes; use a shorter "
                            "folder or name",
                            dir, name, size > 0 ? size - 1 : 0);
    }
    return MR_OK;
}

bool mr_path_exists(const char *path) {
    struct stat info;
    return path != NULL && stat(path, &info) == 0;
}

mr_status mr_make_dirs(const char *dir, mr_error *err) {
    if (dir == NULL || dir[0] == '\0') {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "fileio: the folder to create is empty");
    }
    size_t length = strlen(dir);
    char *path = copy_prefix(dir, length);
    if (path == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory creating '%s'", dir);
    }

    /* Create each prefix that ends at a slash, then the whole path. A
     * prefix that exists gives EEXIST, which is fine for a folder, and the
     * check after the loop rejects a dir that is a file. */
    for (size_t i = 1; i <= length; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            mr_status status = mr_error_set(err, MR_ERR_IO, "fileio: cannot create folder '%s': %s",
                                            path, strerror(errno));
            free(path);
            return status;
        }
        path[i] = saved;
    }
    free(path);

    struct stat info;
    if (stat(dir, &info) != 0) {
        return mr_error_set(err, MR_ERR_IO, "fileio: cannot read folder '%s': %s", dir,
                            strerror(errno));
    }
    if (!S_ISDIR(info.st_mode)) {
        return mr_error_set(err, MR_ERR_IO, "fileio: '%s' exists but is not a folder", dir);
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Folder locks and stale temporary files
 * ------------------------------------------------------------------------ */

struct mr_folder_lock {
    int fd; /* the open lock file, which carries the flock() */
};

/* Reads the process id written into the lock file fd, or 0 when it has
 * none (the owner may not have written it yet). */
static long lock_owner(int fd) {
    char text[32];
    ssize_t length = pread(fd, text, sizeof text - 1, 0);
    if (length <= 0) {
        return 0;
    }
    text[length] = '\0';
    char *end = NULL;
    long pid = strtol(text, &end, 10);
    return end != text && pid > 0 ? pid : 0;
}

mr_status mr_folder_lock_take(const char *folder, mr_folder_lock **out, mr_error *err) {
    *out = NULL;
    char path[4096];
    mr_status status = mr_path_join(path, sizeof path, folder, MR_FOLDER_LOCK_FILE, err);
    if (status != MR_OK) {
        return status;
    }

    mr_folder_lock *lock = malloc(sizeof *lock);
    if (lock == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "fileio: out of memory locking '%s'", folder);
    }
    lock->fd = -1;

    /* A folder that cannot hold a lock still lets a run read and report
     * what it contains; writes then fail on their own. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM)) {
        mr_log(MR_LOG_WARN, "fileio", "cannot create the lock file '%s' (%s), so a second "
               "run in '%s' would go unnoticed", path, strerror(errno), folder);
        *out = lock;
        return MR_OK;
    }
    if (fd < 0) {
        free(lock);
        return mr_error_set(err, MR_ERR_IO, "fileio: cannot open the lock file '%s': %s",
                            path, strerror(errno));
    }

    /* A second flock() on another open file description fails at once
     * with EWOULDBLOCK while the first one is in place, also within one
     * process on a local file system. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        long owner = saved == EWOULDBLOCK ? lock_owner(fd) : 0;
        close(fd);
        if (saved == ENOLCK || saved == EOPNOTSUPP || saved == EINVAL) {
            mr_log(MR_LOG_WARN, "fileio", "the file system of '%s' cannot lock files (%s), "
                   "so a second run in '%s' would go unnoticed", path, strerror(saved),
                   folder);
            *out = lock;
            return MR_OK;
        }
        free(lock);
        if (saved != EWOULDBLOCK) {
            return mr_error_set(err, MR_ERR_IO, "fileio: cannot lock '%s': %s", path,
                                strerror(saved));
        }
        if (owner > 0) {
            return mr_error_set(err, MR_ERR_STATE,
                                "fileio: '%s' is in use by process %ld; wait for that run "
                                "to end or stop it, or choose another folder",
                                folder, owner);
        }
        return mr_error_set(err, MR_ERR_STATE,
                            "fileio: '%s' is in use by another process; wait for that run "
                            "to end or stop it, or choose another folder",
                            folder);
    }

    /* Record the owner for the message above. The lock works without it,
     * but that message then names no process. */
    char text[32];
    int length = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)length, 0) != length) {
        mr_log(MR_LOG_WARN, "fileio", "cannot write this process's id into '%s': %s", path,
               strerror(errno));
    }

    lock->fd = fd;
    *out = lock;
    return MR_OK;
}

void mr_folder_lock_release(mr_folder_lock *lock) {
    if (lock == NULL) {
        return;
    }
    if (lock->fd >= 0) {
        close(lock->fd); /* closing the only descriptor releases the flock() */
    }
    free(lock);
}

/* Returns true when name has the form of create_temp_file's names:
 * .<name>.tmp.<pid>.<counter>, with both numbers in plain digits. */
static bool is_temp_file_name(const char *name) {
    if (name[0] != '.') {
        return false;
    }

    /* The last ".tmp." is followed by digits, a dot and digits. */
    const char *marker = NULL;
    for (const char *at = strstr(name + 1, ".tmp."); at != NULL; at = strstr(at + 1, ".tmp.")) {
        marker = at;
    }
    if (marker == NULL || marker == name + 1) {
        return false;
    }
    const char *c = marker + 5;
    int pid_digits = 0, counter_digits = 0;
    for (; *c >= '0' && *c <= '9'; c++) {
        pid_digits++;
    }
    if (pid_digits == 0 || *c != '.') {
        return false;
    }
    for (c++; *c >= '0' && *c <= '9'; c++) {
        counter_digits++;
    }
    return counter_digits > 0 && *c == '\0';
}

int mr_folder_remove_stale_temps(const char *folder) {
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return -1;
    }
    int removed = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        char path[4096];
        if (is_temp_file_name(entry->d_name) &&
            mr_path_join(path, sizeof path, folder, entry->d_name, NULL) == MR_OK &&
            unlink(path) == 0) {
            removed++;
        }
    }
    closedir(dir);
    return removed;
}
