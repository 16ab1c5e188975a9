/*
 * SHA-256 (FIPS 180-4) of memory and of files, for the rounds manifest's
 * record of the files each stage consumed and produced.
 */
#ifndef MR_TRAIN_SHA256_H
#define MR_TRAIN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"

/* Length of a digest in hex digits, without the terminating NUL. */
#define MR_SHA256_HEX_LENGTH 64

/* The running state of one hash. */
typedef struct mr_sha256 {
    uint32_t state[8];
    uint64_t length;       /* bytes hashed so far */
    uint8_t block[64];     /* the partial block not yet compressed */
    size_t block_used;
} mr_sha256;

void mr_sha256_init(mr_sha256 *hash);
void mr_sha256_update(mr_sha256 *hash, const void *data, size_t size);

/* Pads the message and writes the 32-byte digest. */
void mr_sha256_final(mr_sha256 *hash, uint8_t digest[32]);

/* Writes the digest of size bytes of data as 64 lowercase hex digits and
 * a NUL into hex. */
void mr_sha256_hex(const void *data, size_t size, char hex[MR_SHA256_HEX_LENGTH + 1]);

/* Hashes the file at path, reading it in blocks. Fails with MR_ERR_IO
 * naming the path when it cannot be opened or read. */
mr_status mr_sha256_file(const char *path, char hex[MR_SHA256_HEX_LENGTH + 1],
                         mr_error *err);

#endif /* MR_TRAIN_SHA256_H */
