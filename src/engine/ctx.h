/*
 * The context's private layout, shared by the engine's source files.
 */
#ifndef MR_ENGINE_CTX_H
#define MR_ENGINE_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/tensor.h"

typedef struct mr_arena_chunk {
    unsigned char *memory;
    size_t size;
    size_t used;
    struct mr_arena_chunk *next;
} mr_arena_chunk;

struct mr_ctx {
    mr_arena_chunk *first;
    mr_arena_chunk *last;     /* allocations bump this chunk */
    size_t capacity;          /* bytes in all chunks */
    size_t used;              /* bytes handed out since the last reset */
    size_t peak_nested;       /* largest used + scratch bytes during checkpointed calls */
    uint64_t system_allocations;

    mr_tensor **tape;         /* recorded outputs in creation order */
    size_t tape_count;
    size_t tape_capacity;

    bool grad_enabled;
    bool training;
    mr_status status;         /* first error since the last reset */
    char message[MR_ERROR_MESSAGE_MAX];
};

/* Appends a recorded output to the tape; false (error stored) on failure. */
bool mr_ctx_push_tape(mr_ctx *ctx, mr_tensor *t);

#endif /* MR_ENGINE_CTX_H */
