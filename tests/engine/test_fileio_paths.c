/*
 * Path helpers of fileio.h: mr_path_join fits or rejects the joined path,
 * mr_path_exists follows links, and mr_make_dirs creates nested folders,
 * accepts existing ones and names the path at fault when it fails.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "test.h"

/* Creates a fresh folder under $TMPDIR (or /tmp) for one test. */
static void make_folder(char *folder, size_t size) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, size, "%s/mr_paths_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mkdtemp(%s) failed: %s", folder, strerror(errno));
    }
}

/* Removes path and, for a folder, everything below it. Links are removed,
 * not followed. */
static void remove_tree(const char *path) {
    struct stat info;
    if (lstat(path, &info) != 0) {
        return;
    }
    if (!S_ISDIR(info.st_mode)) {
        unlink(path);
        return;
    }

    chmod(path, 0700);
    DIR *dir = opendir(path);
    if (dir != NULL) {
        char child[1024];
        for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
            if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
                snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
                remove_tree(child);
            }
        }
        closedir(dir);
    }
    rmdir(path);
}

/* Returns true when path is a folder. */
static bool is_folder(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

/* Creates an empty file at path. */
static void touch(const char *path) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot create %s: %s", path, strerror(errno));
        return;
    }
    fclose(file);
}

#define CHECK_CONTAINS(text, part)                                                  \
    do {                                                                            \
        if (strstr((text), (part)) == NULL) {                                       \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'", (text),  \
                         (part));                                                   \
        }                                                                           \
    } while (0)

static void path_join_writes_dir_slash_name(void) {
    char out[64];
    mr_error err = {0};
    CHECK_STATUS(mr_path_join(out, sizeof out, "runs/sasrec", "config.json", &err), MR_OK);
    CHECK(strcmp(out, "runs/sasrec/config.json") == 0);

    /* No separator is added or removed beyond the one slash. */
    CHECK_STATUS(mr_path_join(out, sizeof out, "/", "done", &err), MR_OK);
    CHECK(strcmp(out, "//done") == 0);
    CHECK_STATUS(mr_path_join(out, sizeof out, "", "done", &err), MR_OK);
    CHECK(strcmp(out, "/done") == 0);
}

static void path_join_exact_fit(void) {
    /* "ab/cd" is 5 bytes, 6 with the NUL. */
    char out[6];
    mr_error err = {0};
    CHECK_STATUS(mr_path_join(out, 6, "ab", "cd", &err), MR_OK);
    CHECK(strcmp(out, "ab/cd") == 0);

    CHECK_STATUS(mr_path_join(out, 5, "ab", "cd", &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "'ab/cd'");
    CHECK_CONTAINS(err.message, "longer than 4 bytes");
}

static void path_join_rejects_null(void) {
    char out[16];
    mr_error err = {0};
    CHECK_STATUS(mr_path_join(NULL, sizeof out, "a", "b", &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_path_join(out, sizeof out, NULL, "b", &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_path_join(out, sizeof out, "a", NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_path_join(out, 0, "a", "b", NULL), MR_ERR_INVALID_ARGUMENT);
}

static void path_exists_files_folders_links(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    CHECK(mr_path_exists(folder));

    snprintf(path, sizeof path, "%s/file", folder);
    CHECK(!mr_path_exists(path));
    touch(path);
    CHECK(mr_path_exists(path));

    /* A link counts by its target. */
    char link[512];
    snprintf(link, sizeof link, "%s/link", folder);
    CHECK_INT_EQ(symlink("file", link), 0);
    CHECK(mr_path_exists(link));
    CHECK_INT_EQ(unlink(path), 0);
    CHECK(!mr_path_exists(link));

    CHECK(!mr_path_exists(NULL));
    CHECK(!mr_path_exists(""));
    remove_tree(folder);
}

static void make_dirs_creates_parents(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    mode_t old_mask = umask(022);

    snprintf(path, sizeof path, "%s/a/b/c", folder);
    mr_error err = {0};
    CHECK_STATUS(mr_make_dirs(path, &err), MR_OK);
    CHECK(is_folder(path));

    /* Each new folder gets 0777 minus the umask. */
    struct stat info;
    snprintf(path, sizeof path, "%s/a", folder);
    CHECK_INT_EQ(stat(path, &info), 0);
    CHECK_INT_EQ(info.st_mode & 0777, 0755);
    snprintf(path, sizeof path, "%s/a/b/c", folder);
    CHECK_INT_EQ(stat(path, &info), 0);
    CHECK_INT_EQ(info.st_mode & 0777, 0755);

    umask(old_mask);
    remove_tree(folder);
}

static void make_dirs_existing_and_slashes(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    mr_error err = {0};

    /* An existing folder, a trailing slash and doubled slashes are fine. */
    CHECK_STATUS(mr_make_dirs(folder, &err), MR_OK);
    snprintf(path, sizeof path, "%s/x/", folder);
    CHECK_STATUS(mr_make_dirs(path, &err), MR_OK);
    CHECK_STATUS(mr_make_dirs(path, &err), MR_OK);
    snprintf(path, sizeof path, "%s//y//z", folder);
    CHECK_STATUS(mr_make_dirs(path, &err), MR_OK);
    snprintf(path, sizeof path, "%s/y/z", folder);
    CHECK(is_folder(path));
    CHECK_STATUS(mr_make_dirs("/", &err), MR_OK);

    remove_tree(folder);
}

static void make_dirs_relative_path(void) {
    char folder[256], cwd[1024];
    make_folder(folder, sizeof folder);
    if (getcwd(cwd, sizeof cwd) == NULL || chdir(folder) != 0) {
        mr_test_fail(__FILE__, __LINE__, "cannot change into %s", folder);
        remove_tree(folder);
        return;
    }

    mr_error err = {0};
    CHECK_STATUS(mr_make_dirs("rel/sub", &err), MR_OK);
    CHECK(is_folder("rel/sub"));

    CHECK_INT_EQ(chdir(cwd), 0);
    remove_tree(folder);
}

static void make_dirs_rejects_files(void) {
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    snprintf(path, sizeof path, "%s/file", folder);
    touch(path);
    mr_error err = {0};

    /* dir itself is a file. */
    CHECK_STATUS(mr_make_dirs(path, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, path);
    CHECK_CONTAINS(err.message, "not a folder");

    /* A parent is a file: the folder below it cannot be created. */
    snprintf(path, sizeof path, "%s/file/sub", folder);
    CHECK_STATUS(mr_make_dirs(path, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "cannot create folder");
    CHECK_CONTAINS(err.message, path);
    CHECK_CONTAINS(err.message, strerror(ENOTDIR));

    remove_tree(folder);
}

static void make_dirs_read_only_parent(void) {
    /* Root may create folders whatever the mode, so the check needs
     * another user. */
    if (geteuid() == 0) {
        fprintf(stderr, "  skipped: running as root\n");
        return;
    }
    char folder[256], path[512];
    make_folder(folder, sizeof folder);
    CHECK_INT_EQ(chmod(folder, 0500), 0);

    snprintf(path, sizeof path, "%s/new/sub", folder);
    mr_error err = {0};
    CHECK_STATUS(mr_make_dirs(path, &err), MR_ERR_IO);
    CHECK_CONTAINS(err.message, "cannot create folder");
    snprintf(path, sizeof path, "%s/new", folder);
    CHECK_CONTAINS(err.message, path);
    CHECK(!mr_path_exists(path));

    remove_tree(folder);
}

static void make_dirs_rejects_empty(void) {
    mr_error err = {0};
    CHECK_STATUS(mr_make_dirs(NULL, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_make_dirs("", &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(err.message, "empty");
}

int main(void) {
    MR_RUN(path_join_writes_dir_slash_name);
    MR_RUN(path_join_exact_fit);
    MR_RUN(path_join_rejects_null);
    MR_RUN(path_exists_files_folders_links);
    MR_RUN(make_dirs_creates_parents);
    MR_RUN(make_dirs_existing_and_slashes);
    MR_RUN(make_dirs_relative_path);
    MR_RUN(make_dirs_rejects_files);
    MR_RUN(make_dirs_read_only_parent);
    MR_RUN(make_dirs_rejects_empty);
    return mr_test_finish();
}
