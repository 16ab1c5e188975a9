/*
 * File helpers of the rounds driver: folders, recursive removal and
 * flushing, and a walk over the files of a folder in a fixed order.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rounds_internal.h"

char *rounds_path_join(const char *dir, const char *name) {
    size_t size = strlen(dir) + strlen(name) + 2;
    char *path = malloc(size);
    if (path != NULL) {
        snprintf(path, size, "%s/%s", dir, name);
    }
    return path;
}

/* Orders folder entries by the bytes of their names. */
static int compare_names(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Keeps every entry but "." and "..". */
static int skip_dots(const struct dirent *entry) {
    return strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
}

/* What to do at each entry of a folder walk. */
typedef mr_status (*entry_action)(const char *path, bool is_folder, void *state,
                                  mr_error *err);

/*
 * Walks the folder tree at path depth first, calling action on each
 * entry after its contents (so folders come after their files). Entries
 * of a folder come in byte order of their names. Links are not entered.
 */
static mr_status walk_tree(const char *path, entry_action action, void *state, mr_error *err) {
    struct stat info;
    if (lstat(path, &info) != 0) {
        if (errno == ENOENT) {
            return mr_error_set(err, MR_ERR_NOT_FOUND, "rounds: '%s' does not exist", path);
        }
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot read '%s': %s", path,
                            strerror(errno));
    }
    if (!S_ISDIR(info.st_mode)) {
        return action(path, false, state, err);
    }

    struct dirent **entries = NULL;
    int count = scandir(path, &entries, skip_dots, compare_names);
    if (count < 0) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot list folder '%s': %s", path,
                            strerror(errno));
    }
    mr_status status = MR_OK;
    for (int i = 0; i < count; i++) {
        if (status == MR_OK) {
            char *child = rounds_path_join(path, entries[i]->d_name);
            status = child != NULL
                         ? walk_tree(child, action, state, err)
                         : mr_error_set(err, MR_ERR_NO_MEMORY, "rounds: out of memory");
            free(child);
        }
        free(entries[i]);
    }
    free(entries);
    if (status != MR_OK) {
        return status;
    }
    return action(path, true, state, err);
}

static mr_status remove_entry(const char *path, bool is_folder, void *state, mr_error *err) {
    (void)state;
    int result = is_folder ? rmdir(path) : unlink(path);
    if (result != 0 && errno != ENOENT) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot remove '%s': %s", path,
                            strerror(errno));
    }
    return MR_OK;
}

mr_status rounds_remove_tree(const char *path, mr_error *err) {
    struct stat info;
    if (lstat(path, &info) != 0 && errno == ENOENT) {
        return MR_OK;
    }
    return walk_tree(path, remove_entry, NULL, err);
}

static mr_status sync_entry(const char *path, bool is_folder, void *state, mr_error *err) {
    (void)state;
    struct stat info;
    if (!is_folder && (lstat(path, &info) != 0 || !S_ISREG(info.st_mode))) {
        return MR_OK; /* links and special files have no data of their own to flush */
    }
    int fd = open(path, (is_folder ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot open '%s' to flush it: %s", path,
                            strerror(errno));
    }
    int result = fsync(fd);
    int saved = errno;
    close(fd);
    /* Some filesystems cannot flush a folder and return EINVAL. */
    if (result != 0 && !(is_folder && saved == EINVAL)) {
        return mr_error_set(err, MR_ERR_IO, "rounds: flushing '%s' to disk failed: %s", path,
                            strerror(saved));
    }
    return MR_OK;
}

mr_status rounds_sync_tree(const char *path, mr_error *err) {
    return walk_tree(path, sync_entry, NULL, err);
}

mr_status rounds_sync_folder(const char *path, mr_error *err) {
    return sync_entry(path, true, NULL, err);
}

/* The state of rounds_walk_files. */
typedef struct file_walk {
    rounds_file_visitor visit;
    void *state;
} file_walk;

static mr_status visit_regular_file(const char *path, bool is_folder, void *state,
                                    mr_error *err) {
    file_walk *walk = state;
    struct stat info;
    if (is_folder || stat(path, &info) != 0 || !S_ISREG(info.st_mode)) {
        return MR_OK;
    }
    char *real_path = realpath(path, NULL);
    if (real_path == NULL) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot resolve '%s': %s", path,
                            strerror(errno));
    }
    mr_status status = walk->visit(path, real_path, walk->state, err);
    free(real_path);
    return status;
}

mr_status rounds_walk_files(const char *path, rounds_file_visitor visit, void *state,
                            mr_error *err) {
    struct stat info;
    if (stat(path, &info) != 0) {
        return mr_error_set(err, errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO,
                            "rounds: cannot read '%s': %s", path, strerror(errno));
    }
    file_walk walk = {.visit = visit, .state = state};

    /* A link to a file is recorded as the file, and a link to a folder is
     * walked at its target; walk_tree would skip either. */
    if (!S_ISDIR(info.st_mode)) {
        return visit_regular_file(path, false, &walk, err);
    }
    char *real_folder = realpath(path, NULL);
    if (real_folder == NULL) {
        return mr_error_set(err, MR_ERR_IO, "rounds: cannot resolve '%s': %s", path,
                            strerror(errno));
    }
    mr_status status = walk_tree(real_folder, visit_regular_file, &walk, err);
    free(real_folder);
    return status;
}
