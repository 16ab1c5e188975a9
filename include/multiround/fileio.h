/*
 * multiround: atomic file writes, bounded file reads and path helpers.
 *
 * Checkpoints and outputs are replaced atomically. The bytes go to a
 * temporary file in the target's folder, which is flushed with fsync and
 * renamed over the target. Then the folder is flushed, so that the rename
 * itself survives a crash. A reader sees either the old file or the
 * complete new one, never a partial write. On any failure the temporary
 * file is removed and the target is left as it was. Only a crash between
 * creating and renaming the temporary file leaves it behind, named
 * .<target name>.tmp.<pid>.<counter> in the target's folder.
 */
#ifndef MULTIROUND_FILEIO_H
#define MULTIROUND_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Writes size bytes of data to path atomically. The new file gets mode
 * 0666 minus the process umask. Returns MR_ERR_IO with the path and the
 * system's error text when any step fails, and MR_ERR_INVALID_ARGUMENT
 * for a NULL or empty path.
 */
mr_status mr_file_write_atomic(const char *path, const void *data, size_t size,
                               mr_error *err);

/* A file being written through a temporary file; see mr_file_writer_open. */
typedef struct mr_file_writer mr_file_writer;

/*
 * Starts an atomic write of path for content written piece by piece:
 * creates the temporary file and stores the writer in *out. Finish with
 * mr_file_writer_commit() or mr_file_writer_abort(), each of which frees
 * the writer. On failure *out is NULL and nothing is left on disk.
 */
mr_status mr_file_writer_open(const char *path, mr_file_writer **out,
                              mr_error *err);

/*
 * Appends size bytes to the temporary file. After a failure the writer
 * stays failed: later writes return the same status and commit aborts.
 */
mr_status mr_file_writer_write(mr_file_writer *writer, const void *data,
                               size_t size, mr_error *err);

/*
 * Flushes the temporary file, renames it over the target and flushes the
 * folder. Frees the writer whatever the outcome; on failure the temporary
 * file is removed and the target keeps its old content.
 */
mr_status mr_file_writer_commit(mr_file_writer *writer, mr_error *err);

/* Removes the temporary file and frees the writer. writer may be NULL. */
void mr_file_writer_abort(mr_file_writer *writer);

/* Returns the number of bytes written so far. */
size_t mr_file_writer_size(const mr_file_writer *writer);

/*
 * Reads the whole file at path into a new buffer stored in *data (free it
 * with free()) and its length in *size. The buffer has one extra NUL
 * byte after the content so that text can be parsed in place. A file
 * larger than max_size bytes gives MR_ERR_FORMAT naming both sizes;
 * failures to open or read give MR_ERR_IO with the path and the system's
 * error text. On failure *data is NULL and *size is 0.
 */
mr_status mr_file_read_all(const char *path, size_t max_size, void **data,
                           size_t *size, mr_error *err);

/*
 * Writes "dir/name" into out, a buffer of size bytes. Returns
 * MR_ERR_INVALID_ARGUMENT naming the path and the limit when it does not
 * fit (out then contains the path cut to size - 1 bytes), and for a NULL
 * argument.
 */
mr_status mr_path_join(char *out, size_t size, const char *dir, const char *name,
                       mr_error *err);

/* Returns true when path names an existing entry (file, folder or other),
 * following symbolic links. A NULL path gives false. */
bool mr_path_exists(const char *path);

/*
 * Creates folder dir and its missing parents, as mkdir -p does, each with
 * mode 0777 minus the process umask. A dir that is already a folder is
 * fine. Returns MR_ERR_INVALID_ARGUMENT for a NULL or empty dir and
 * MR_ERR_NO_MEMORY when memory runs out. Returns MR_ERR_IO, naming the
 * folder and the system's error text, when one cannot be created or dir
 * exists but is not a folder. Folders created before a failure stay.
 */
mr_status mr_make_dirs(const char *dir, mr_error *err);

/* An exclusive lock on a folder, taken by mr_folder_lock_take. */
typedef struct mr_folder_lock mr_folder_lock;

/* The file in a locked folder that carries the flock(). */
#define MR_FOLDER_LOCK_FILE ".lock"

/*
 * Locks folder for this process, so that two runs cannot write into one
 * folder at the same time. Takes an exclusive flock() on folder/.lock
 * (MR_FOLDER_LOCK_FILE), creating that file when it is missing, and
 * writes this process's id into it. The lock ends with
 * mr_folder_lock_release() or when the process ends, however it ends, so
 * a killed run leaves no stale lock. The descriptor is close-on-exec, but
 * a child made by fork() without exec shares the lock. The folder must
 * exist. Fails with MR_ERR_STATE, naming the folder and the owner's
 * process id, when another process has the lock, and with MR_ERR_IO when
 * the lock file cannot be opened or locked. A folder where the lock file
 * cannot be created (read-only, no permission) or a file system without
 * flock() gets a warning and a lock object that locks nothing, so that a
 * finished run there can still be read. On failure *out is NULL.
 */
mr_status mr_folder_lock_take(const char *folder, mr_folder_lock **out, mr_error *err);

/* Releases the lock and frees it. The .lock file stays, because removing
 * it would let a process that opened it just before lock a file that no
 * longer exists. lock may be NULL. */
void mr_folder_lock_release(mr_folder_lock *lock);

/*
 * Removes the temporary files that unfinished atomic writes left in folder
 * (not in its subfolders): every name of the form
 * .<name>.tmp.<pid>.<counter>. Returns how many it removed, or -1 when
 * folder cannot be read. Call it only while holding the folder's lock and
 * before this process writes into the folder, since it also removes the
 * files of writes still under way.
 */
int mr_folder_remove_stale_temps(const char *folder);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_FILEIO_H */
