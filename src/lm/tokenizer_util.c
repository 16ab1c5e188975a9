/*
 * Containers of the tokenizers: the hash map, the id list, the bigram heap
 * and the per-call scratch memory.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* FNV-1a over the bytes, then a 64-bit finaliser so that linear probing
 * gets well-mixed low bits. */
static uint64_t hash_bytes(const char *ptr, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)ptr[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_u64(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return key;
}

bool mr_tok_map_init(mr_tok_map *map, size_t max_entries, bool strings) {
    memset(map, 0, sizeof *map);
    size_t capacity = 16;
    while (capacity < 2 * max_entries + 1) {
        capacity *= 2;
    }
    map->slots = calloc(capacity, sizeof *map->slots);
    if (map->slots == NULL) {
        return false;
    }
    if (strings) {
        map->lens = calloc(capacity, sizeof *map->lens);
        if (map->lens == NULL) {
            free(map->slots);
            map->slots = NULL;
            return false;
        }
    }
    map->capacity = capacity;
    return true;
}

void mr_tok_map_free(mr_tok_map *map) {
    free(map->slots);
    free(map->lens);
    memset(map, 0, sizeof *map);
}

/* Grows the table to twice its capacity and rehashes every entry. A
 * string slot stores its hash in key, an integer slot its raw key. */
static bool map_grow(mr_tok_map *map) {
    mr_tok_map bigger;
    if (!mr_tok_map_init(&bigger, map->capacity, map->lens != NULL)) {
        return false;
    }
    size_t mask = bigger.capacity - 1;
    for (size_t i = 0; i < map->capacity; i++) {
        if (!map->slots[i].used) {
            continue;
        }
        uint64_t h = map->lens != NULL ? map->slots[i].key : hash_u64(map->slots[i].key);
        size_t j = h & mask;
        while (bigger.slots[j].used) {
            j = (j + 1) & mask;
        }
        bigger.slots[j] = map->slots[i];
        if (map->lens != NULL) {
            bigger.lens[j] = map->lens[i];
        }
    }
    bigger.count = map->count;
    mr_tok_map_free(map);
    *map = bigger;
    return true;
}

int mr_tok_map_put_string(mr_tok_map *map, const char *ptr, size_t len, int32_t value) {
    if (2 * (map->count + 1) > map->capacity && !map_grow(map)) {
        return -1;
    }

    uint64_t h = hash_bytes(ptr, len);
    size_t mask = map->capacity - 1;
    size_t j = h & mask;
    while (map->slots[j].used) {
        if (map->slots[j].key == h && map->lens[j] == len && memcmp(map->slots[j].ptr, ptr, len) == 0) {
            return 0;
        }
        j = (j + 1) & mask;
    }
    map->slots[j] = (mr_tok_map_slot){.ptr = ptr, .key = h, .value = value, .used = true};
    map->lens[j] = (uint32_t)len;
    map->count++;
    return 1;
}

int32_t mr_tok_map_get_string(const mr_tok_map *map, const char *ptr, size_t len) {
    uint64_t h = hash_bytes(ptr, len);
    size_t mask = map->capacity - 1;
    for (size_t j = h & mask; map->slots[j].used; j = (j + 1) & mask) {
        if (map->slots[j].key == h && map->lens[j] == len && memcmp(map->slots[j].ptr, ptr, len) == 0) {
            return map->slots[j].value;
        }
    }
    return -1;
}

int mr_tok_map_put_u64(mr_tok_map *map, uint64_t key, int32_t value) {
    if (2 * (map->count + 1) > map->capacity && !map_grow(map)) {
        return -1;
    }

    size_t mask = map->capacity - 1;
    size_t j = hash_u64(key) & mask;
    while (map->slots[j].used) {
        if (map->slots[j].key == key) {
            return 0;
        }
        j = (j + 1) & mask;
    }
    /* The slot keeps the raw key; probing starts from its hash. */
    map->slots[j] = (mr_tok_map_slot){.ptr = NULL, .key = key, .value = value, .used = true};
    map->count++;
    return 1;
}

int32_t mr_tok_map_get_u64(const mr_tok_map *map, uint64_t key) {
    size_t mask = map->capacity - 1;
    for (size_t j = hash_u64(key) & mask; map->slots[j].used; j = (j + 1) & mask) {
        if (map->slots[j].key == key) {
            return map->slots[j].value;
        }
    }
    return -1;
}

bool mr_tok_ids_push(mr_tok_ids *ids, int32_t id) {
    if (ids->count == ids->capacity) {
        size_t capacity = ids->capacity == 0 ? 64 : 2 * ids->capacity;
        int32_t *data = realloc(ids->data, capacity * sizeof *data);
        if (data == NULL) {
            return false;
        }
        ids->data = data;
        ids->capacity = capacity;
    }
    ids->data[ids->count++] = id;
    return true;
}

/* Whether a pops before b: lower priority, then the leftmost pair. */
static bool bigram_before(const mr_tok_bigram *a, const mr_tok_bigram *b) {
    if (a->priority != b->priority) {
        return a->priority < b->priority;
    }
    return a->left < b->left;
}

bool mr_tok_heap_push(mr_tok_heap *heap, mr_tok_bigram item) {
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity == 0 ? 64 : 2 * heap->capacity;
        mr_tok_bigram *items = realloc(heap->items, capacity * sizeof *items);
        if (items == NULL) {
            return false;
        }
        heap->items = items;
        heap->capacity = capacity;
    }

    size_t i = heap->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&item, &heap->items[parent])) {
            break;
        }
        heap->items[i] = heap->items[parent];
        i = parent;
    }
    heap->items[i] = item;
    return true;
}

bool mr_tok_heap_pop(mr_tok_heap *heap, mr_tok_bigram *out) {
    if (heap->count == 0) {
        return false;
    }
    *out = heap->items[0];

    mr_tok_bigram last = heap->items[--heap->count];
    size_t n = heap->count;
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && bigram_before(&heap->items[child + 1], &heap->items[child])) {
            child++;
        }
        if (!bigram_before(&heap->items[child], &last)) {
            break;
        }
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (n > 0) {
        heap->items[i] = last;
    }
    return true;
}

void mr_tok_scratch_free(mr_tok_scratch *scratch) {
    free(scratch->symbols);
    free(scratch->heap.items);
    free(scratch->text);
    if (scratch->splits.slots != NULL) {
        mr_tok_map_free(&scratch->splits);
    }
    memset(scratch, 0, sizeof *scratch);
}

bool mr_tok_scratch_reserve(mr_tok_scratch *scratch, size_t n_symbols, size_t text_bytes) {
    if (n_symbols > scratch->symbol_capacity) {
        mr_tok_symbol *symbols = realloc(scratch->symbols, n_symbols * sizeof *symbols);
        if (symbols == NULL) {
            return false;
        }
        scratch->symbols = symbols;
        scratch->symbol_capacity = n_symbols;
    }
    if (text_bytes > scratch->text_capacity) {
        char *text = realloc(scratch->text, text_bytes);
        if (text == NULL) {
            return false;
        }
        scratch->text = text;
        scratch->text_capacity = text_bytes;
    }
    return true;
}
