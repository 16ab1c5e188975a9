/*
 * Private parts of the tokenizers: the handle's layout, a hash map from
 * byte strings or 64-bit keys to int32 values, a growable id list, a
 * bigram priority queue and the Unicode classes of the GPT-2
 * pre-tokenizer.
 */
#ifndef MR_LM_TOKENIZER_INTERNAL_H
#define MR_LM_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/tokenizer.h"

/* ------------------------------------------------------------------------
 * Hash map: open addressing with linear probing. A key is either a byte
 * string that the caller keeps alive (ptr, len) or a 64-bit integer.
 * ------------------------------------------------------------------------ */

typedef struct mr_tok_map_slot {
    const char *ptr; /* NULL for an empty slot in a string map */
    uint64_t key;    /* the integer key, or the hash of the string */
    int32_t value;
    bool used;
} mr_tok_map_slot;

typedef struct mr_tok_map {
    mr_tok_map_slot *slots;
    uint32_t *lens;  /* string lengths, one per slot; NULL in an integer map */
    size_t capacity; /* a power of two, at least twice the entry count */
    size_t count;
} mr_tok_map;

/* Allocates a map for up to max_entries entries; strings selects string keys. */
bool mr_tok_map_init(mr_tok_map *map, size_t max_entries, bool strings);
void mr_tok_map_free(mr_tok_map *map);

/* Inserts (ptr, len) -> value unless the key is present. Returns 1 when
 * inserted, 0 when the key was present (its first value stays) and -1
 * when memory ran out. */
int mr_tok_map_put_string(mr_tok_map *map, const char *ptr, size_t len, int32_t value);
/* Returns the value of (ptr, len), or -1. */
int32_t mr_tok_map_get_string(const mr_tok_map *map, const char *ptr, size_t len);

int mr_tok_map_put_u64(mr_tok_map *map, uint64_t key, int32_t value);
int32_t mr_tok_map_get_u64(const mr_tok_map *map, uint64_t key);

/* ------------------------------------------------------------------------
 * Growable list of ids, the output of encode's steps.
 * ------------------------------------------------------------------------ */

typedef struct mr_tok_ids {
    int32_t *data;
    size_t count;
    size_t capacity;
} mr_tok_ids;

/* Appends id; returns false when memory runs out. */
bool mr_tok_ids_push(mr_tok_ids *ids, int32_t id);

/* ------------------------------------------------------------------------
 * Bigram queue: a binary min-heap of candidate merges of adjacent symbols.
 * Smaller priority pops first, and among equal priorities the leftmost
 * pair, which is the order of both SentencePiece and GPT-2.
 * ------------------------------------------------------------------------ */

typedef struct mr_tok_bigram {
    double priority; /* SPM: minus the score; BPE: the merge rank */
    int32_t left;    /* symbol index */
    int32_t right;
    int32_t check;   /* SPM: merged byte length; BPE: the left symbol's token id */
    int32_t check2;  /* BPE: the right symbol's token id */
    int32_t result;  /* the merged token id */
} mr_tok_bigram;

typedef struct mr_tok_heap {
    mr_tok_bigram *items;
    size_t count;
    size_t capacity;
} mr_tok_heap;

bool mr_tok_heap_push(mr_tok_heap *heap, mr_tok_bigram item);
/* Removes the first item into *out; returns false when empty. */
bool mr_tok_heap_pop(mr_tok_heap *heap, mr_tok_bigram *out);

/* A symbol of the merge loop: a byte range of the text in a linked list. */
typedef struct mr_tok_symbol {
    int32_t prev;  /* -1 at the start */
    int32_t next;  /* -1 at the end */
    int32_t start; /* byte offset */
    int32_t len;   /* bytes; 0 once merged into its left neighbour */
    int32_t id;    /* BPE: the symbol's token id */
} mr_tok_symbol;

/* Scratch memory of one encode call, reused across its fragments. */
typedef struct mr_tok_scratch {
    mr_tok_symbol *symbols;
    size_t symbol_capacity;
    mr_tok_heap heap;
    char *text;
    size_t text_capacity;
    mr_tok_map splits; /* SPM: (start, len) of a merged symbol -> its left part's length */
} mr_tok_scratch;

void mr_tok_scratch_free(mr_tok_scratch *scratch);
bool mr_tok_scratch_reserve(mr_tok_scratch *scratch, size_t n_symbols, size_t text_bytes);

/* ------------------------------------------------------------------------
 * The handle
 * ------------------------------------------------------------------------ */

struct mr_tokenizer {
    mr_tokenizer_kind kind;
    int32_t n_tokens;
    char *text_pool;      /* every token text, back to back */
    size_t *text_offsets; /* n_tokens + 1 offsets into text_pool */
    float *scores;
    uint8_t *types;
    size_t max_token_len;
    bool has_unused;      /* some token has type MR_TOKEN_UNUSED */
    mr_tok_map by_text;   /* token text -> first id with that text */

    int32_t bos_id;
    int32_t eos_id;
    int32_t unk_id;
    bool add_space_prefix;
    bool add_bos;
    mr_tokenizer_pre pre;  /* BPE: how text splits into pieces */
    bool ignore_merges;    /* BPE: look a whole piece up before merging */

    int32_t byte_ids[256]; /* SPM: <0xNN> ids; BPE: id of each byte's character; -1 if none */

    mr_tok_map merges;     /* BPE: (left id << 32 | right id) -> merge rank */
    int32_t *merge_result; /* BPE: merged token id per rank */

    int32_t *specials;     /* control and user-defined ids, by first byte then longest first */
    int32_t n_specials;
    int32_t special_start[257]; /* specials with first byte b are [start[b], start[b + 1]) */
};

/* Returns the token text of id (in range) and its length. */
static inline const char *mr_tok_text(const mr_tokenizer *tok, int32_t id, size_t *len) {
    *len = tok->text_offsets[id + 1] - tok->text_offsets[id];
    return tok->text_pool + tok->text_offsets[id];
}

/* Encodes one fragment of plain text (no special tokens in it), appending
 * to ids. space_prefix makes SPM prepend U+2581. */
mr_status mr_tok_encode_spm(const mr_tokenizer *tok, const char *text, size_t len,
                            bool space_prefix, mr_tok_scratch *scratch, mr_tok_ids *ids,
                            mr_error *err);
mr_status mr_tok_encode_bpe(const mr_tokenizer *tok, const char *text, size_t len,
                            mr_tok_scratch *scratch, mr_tok_ids *ids, mr_error *err);

/* Builds the byte alphabet and merge table of a BPE tokenizer. */
mr_status mr_tok_build_bpe(mr_tokenizer *tok, const mr_tokenizer_vocab *vocab, mr_error *err);

/* Returns the end of the pre-token that starts at text[i] (i < len) under
 * pattern pre; the next one starts there. */
size_t mr_tok_pretoken_end(mr_tokenizer_pre pre, const char *text, size_t len, size_t i);

/* Appends the bytes of one BPE token text (GPT-2 alphabet) to out;
 * characters outside the alphabet are copied as UTF-8. Returns the byte
 * count, writing only while it fits in cap. */
size_t mr_tok_bpe_unmap(const char *text, size_t len, char *out, size_t cap);

/* ------------------------------------------------------------------------
 * UTF-8 and Unicode classes
 * ------------------------------------------------------------------------ */

/*
 * Decodes the UTF-8 sequence at text[0..len). Returns its length (1..4) and
 * stores the code point, or returns 1 and stores -1 when the bytes there
 * are not a valid, shortest-form sequence of a scalar value.
 */
int mr_tok_utf8_decode(const unsigned char *text, size_t len, int32_t *cp);

/* Writes the UTF-8 form of code point cp (at most 4 bytes); returns the length. */
int mr_tok_utf8_encode(uint32_t cp, char *out);

bool mr_tok_is_letter(int32_t cp);     /* general category L* */
bool mr_tok_is_number(int32_t cp);     /* general category N* */
bool mr_tok_is_whitespace(int32_t cp); /* the White_Space property */

#endif /* MR_LM_TOKENIZER_INTERNAL_H */
