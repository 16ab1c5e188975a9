/*
 * Contexts: an arena of memory chunks, the autodiff tape and the first
 * stored error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"

#define ARENA_ALIGN 64
#define DEFAULT_ARENA_BYTES ((size_t)1 << 20)

/* Appends a chunk of at least size bytes; returns false when malloc fails. */
static bool arena_add_chunk(mr_ctx *ctx, size_t size) {
    mr_arena_chunk *chunk = malloc(sizeof *chunk);
    if (chunk == NULL) {
        return false;
    }
    chunk->memory = aligned_alloc(ARENA_ALIGN, size);
    if (chunk->memory == NULL) {
        free(chunk);
        return false;
    }
    chunk->size = size;
    chunk->used = 0;
    chunk->next = NULL;

    if (ctx->last == NULL) {
        ctx->first = chunk;
    } else {
        ctx->last->next = chunk;
    }
    ctx->last = chunk;
    ctx->capacity += size;
    ctx->system_allocations++;
    return true;
}

static void arena_free_chunks(mr_ctx *ctx) {
    mr_arena_chunk *chunk = ctx->first;
    while (chunk != NULL) {
        mr_arena_chunk *next = chunk->next;
        free(chunk->memory);
        free(chunk);
        chunk = next;
    }
    ctx->first = NULL;
    ctx->last = NULL;
    ctx->capacity = 0;
}

static size_t round_up(size_t n, size_t multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

mr_ctx *mr_ctx_create(size_t initial_bytes) {
    mr_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return NULL;
    }
    if (initial_bytes == 0) {
        initial_bytes = DEFAULT_ARENA_BYTES;
    }
    if (!arena_add_chunk(ctx, round_up(initial_bytes, ARENA_ALIGN))) {
        free(ctx);
        return NULL;
    }
    ctx->grad_enabled = true;
    ctx->training = true;
    return ctx;
}

void mr_ctx_free(mr_ctx *ctx) {
    if (ctx == NULL) {
        return;
    }
    arena_free_chunks(ctx);
    free(ctx->tape);
    free(ctx);
}

/*
 * Keeps one chunk as large as all chunks together, so the next step with
 * the same work fits without asking the system for memory.
 */
void mr_ctx_reset(mr_ctx *ctx) {
    if (ctx->first != ctx->last) {
        size_t total = ctx->capacity;
        uint64_t allocations = ctx->system_allocations;
        arena_free_chunks(ctx);
        ctx->system_allocations = allocations;
        if (!arena_add_chunk(ctx, total)) {
            /* NOTE: the next mr_ctx_alloc() tries again with the size it
             * needs and stores the error if that fails too. */
            mr_log(MR_LOG_WARN, "engine", "could not merge arena chunks into %zu bytes",
                   total);
        }
    }
    if (ctx->first != NULL) {
        ctx->first->used = 0;
    }
    ctx->used = 0;
    ctx->peak_nested = 0;
    ctx->tape_count = 0;
    ctx->status = MR_OK;
    ctx->message[0] = '\0';
}

bool mr_ctx_set_grad_enabled(mr_ctx *ctx, bool enabled) {
    bool previous = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return previous;
}

bool mr_ctx_grad_enabled(const mr_ctx *ctx) { return ctx->grad_enabled; }

bool mr_ctx_set_training(mr_ctx *ctx, bool training) {
    bool previous = ctx->training;
    ctx->training = training;
    return previous;
}

bool mr_ctx_training(const mr_ctx *ctx) { return ctx->training; }

mr_status mr_ctx_status(const mr_ctx *ctx) { return ctx->status; }

const char *mr_ctx_error_message(const mr_ctx *ctx) { return ctx->message; }

mr_status mr_ctx_take_error(const mr_ctx *ctx, mr_error *err) {
    if (ctx->status != MR_OK) {
        mr_error_set(err, ctx->status, "%s", ctx->message);
    }
    return ctx->status;
}

void mr_ctx_fail(mr_ctx *ctx, mr_status status, const char *fmt, ...) {
    if (ctx->status != MR_OK) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    vsnprintf(ctx->message, sizeof ctx->message, fmt, args);
    va_end(args);
    ctx->status = status;
}

size_t mr_ctx_used_bytes(const mr_ctx *ctx) { return ctx->used; }

size_t mr_ctx_capacity_bytes(const mr_ctx *ctx) { return ctx->capacity; }

size_t mr_ctx_peak_bytes(const mr_ctx *ctx) {
    return ctx->peak_nested > ctx->used ? ctx->peak_nested : ctx->used;
}

uint64_t mr_ctx_system_allocations(const mr_ctx *ctx) {
    return ctx->system_allocations;
}

/*
 * Bumps the current chunk, or moves on to a fresh one of at least twice the
 * previous size. Chunks left behind keep their unused tail until reset.
 */
void *mr_ctx_alloc(mr_ctx *ctx, size_t size) {
    size = round_up(size == 0 ? 1 : size, ARENA_ALIGN);

    mr_arena_chunk *chunk = ctx->last;
    if (chunk == NULL || chunk->size - chunk->used < size) {
        size_t grow = chunk == NULL ? DEFAULT_ARENA_BYTES : chunk->size * 2;
        if (grow < size) {
            grow = size;
        }
        if (!arena_add_chunk(ctx, grow)) {
            mr_ctx_fail(ctx, MR_ERR_NO_MEMORY,
                        "engine: cannot grow the arena by %zu bytes (%zu bytes "
                        "in use); use smaller batches or models",
                        grow, ctx->used);
            return NULL;
        }
        chunk = ctx->last;
    }

    void *memory = chunk->memory + chunk->used;
    chunk->used += size;
    ctx->used += size;
    return memory;
}

/* Appends t to the tape, doubling its capacity with realloc when full. */
bool mr_ctx_push_tape(mr_ctx *ctx, mr_tensor *t) {
    if (ctx->tape_count == ctx->tape_capacity) {
        size_t capacity = ctx->tape_capacity == 0 ? 256 : ctx->tape_capacity * 2;
        mr_tensor **tape = realloc(ctx->tape, capacity * sizeof *tape);
        if (tape == NULL) {
            mr_ctx_fail(ctx, MR_ERR_NO_MEMORY, "engine: cannot grow the tape to %zu entries",
                        capacity);
            return false;
        }
        ctx->tape = tape;
        ctx->tape_capacity = capacity;
        ctx->system_allocations++;
    }
    ctx->tape[ctx->tape_count++] = t;
    return true;
}
