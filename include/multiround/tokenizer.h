/*
 * multiround: tokenizers of Llama-family and GPT-2-family language models.
 *
 * One handle runs either of two algorithms:
 *
 *   - SentencePiece-style BPE (MR_TOKENIZER_SPM), as llama.cpp runs GGUF
 *     vocabularies with tokenizer.ggml.model = "llama". Spaces become
 *     U+2581, a leading U+2581 is added when add_space_prefix is set, the
 *     initial symbols are UTF-8 characters, and adjacent symbols merge
 *     greedily by the highest score of the merged piece. A character
 *     without a token falls back to <0xNN> byte tokens, as do bytes that
 *     are not valid UTF-8.
 *   - Byte-level BPE (MR_TOKENIZER_BPE), as GPT-2 (tokenizer.ggml.model =
 *     "gpt2", or a Hugging Face "BPE" model with a ByteLevel
 *     pre-tokenizer). Text is split by the GPT-2 pre-tokenizer pattern,
 *     each byte becomes a character of the GPT-2 byte alphabet, and merges
 *     apply in rank order. Any byte string, valid UTF-8 or not, encodes and
 *     decodes back to itself.
 *
 * Control (type 3) and user-defined (type 4) tokens are matched as whole
 * strings in the input only when the caller passes parse_special. Without
 * it, their text is tokenized like any other text.
 *
 * NOTE: SPM decoding cannot tell an input U+2581 from a space, so text
 * containing U+2581 decodes with spaces in its place (as in SentencePiece
 * and llama.cpp). Every other byte string round-trips through SPM when
 * decode strips the prefix space.
 *
 * A tokenizer is immutable after creation, so several threads may encode
 * and decode with one handle at once.
 */
#ifndef MULTIROUND_TOKENIZER_H
#define MULTIROUND_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mr_gguf mr_gguf;
typedef struct mr_tokenizer mr_tokenizer;

typedef enum mr_tokenizer_kind {
    MR_TOKENIZER_SPM = 1, /* SentencePiece-style BPE with byte fallback */
    MR_TOKENIZER_BPE = 2  /* GPT-2 byte-level BPE */
} mr_tokenizer_kind;

/*
 * The pattern that splits text into pieces before byte-level BPE merges
 * them. Llama 3 and Qwen2 differ from GPT-2 in matching contractions
 * case-insensitively, in letting one character that is neither a letter,
 * a digit nor a line break lead a run of letters, in keeping line breaks
 * with the white space and punctuation before them, and in splitting
 * digits into runs of 1 to 3 (Llama 3) or single digits (Qwen2), without
 * a leading space.
 */
typedef enum mr_tokenizer_pre {
    MR_TOKENIZER_PRE_GPT2 = 0,   /* GGUF "gpt-2" and "default" */
    MR_TOKENIZER_PRE_LLAMA3 = 1, /* GGUF "llama-bpe" */
    MR_TOKENIZER_PRE_QWEN2 = 2   /* GGUF "qwen2" */
} mr_tokenizer_pre;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type stores them. */
typedef enum mr_token_type {
    MR_TOKEN_UNDEFINED = 0,    /* treated as normal */
    MR_TOKEN_NORMAL = 1,
    MR_TOKEN_UNKNOWN = 2,      /* the <unk> token */
    MR_TOKEN_CONTROL = 3,      /* <s>, </s>, <|endoftext|> */
    MR_TOKEN_USER_DEFINED = 4, /* added tokens kept whole */
    MR_TOKEN_UNUSED = 5,       /* a merge step only, never an output */
    MR_TOKEN_BYTE = 6          /* <0xNN>, the byte fallback of SPM */
} mr_token_type;

/*
 * A vocabulary as plain arrays, all borrowed for the duration of the
 * create call only (the tokenizer copies what it keeps).
 */
typedef struct mr_tokenizer_vocab {
    int64_t n_tokens;
    const char *const *tokens; /* token texts; byte-level BPE texts are in the GPT-2 alphabet */
    const size_t *token_lens;  /* byte lengths, or NULL for NUL-terminated texts */
    const float *scores;       /* merge scores; required for SPM, ignored by BPE */
    const int32_t *types;      /* mr_token_type values, or NULL for all normal */
    int64_t n_merges;          /* BPE only: merges in rank order, rank 0 first */
    const char *const *merges; /* "left right", both token texts, separated by one space */
    const size_t *merge_lens;  /* byte lengths, or NULL for NUL-terminated merges */
    int32_t bos_id;            /* -1 when the vocabulary has none */
    int32_t eos_id;            /* -1 when the vocabulary has none */
    int32_t unk_id;            /* -1 when the vocabulary has none */
    bool add_space_prefix;     /* SPM: prepend U+2581 to text at the start and after a special token */
    bool add_bos;              /* the model's default for encode's add_bos */
    mr_tokenizer_pre pre;      /* BPE only: the pre-tokenizer; 0 is GPT-2's */
    bool ignore_merges;        /* BPE only: a piece that is a whole token becomes that
                                * token without merges (Llama 3's setting) */
} mr_tokenizer_vocab;

/*
 * Create a SentencePiece-style tokenizer. Rejects with MR_ERR_FORMAT a
 * vocabulary without scores, with a type outside 0..6, with a byte token
 * whose text is not <0xNN>, or with a special id outside [0, n_tokens).
 */
mr_status mr_tokenizer_create_spm(const mr_tokenizer_vocab *vocab, mr_tokenizer **out,
                                  mr_error *err);

/*
 * Create a GPT-2 byte-level BPE tokenizer that splits text by vocab->pre.
 * Rejects with MR_ERR_FORMAT a vocabulary that lacks a token for one of
 * the 256 byte characters, or a merge without a space or naming a token
 * (either side or the merged result) that is not in the vocabulary, and
 * with MR_ERR_INVALID_ARGUMENT a pre value outside mr_tokenizer_pre.
 */
mr_status mr_tokenizer_create_bpe(const mr_tokenizer_vocab *vocab, mr_tokenizer **out,
                                  mr_error *err);

/*
 * Create a tokenizer from the tokenizer.ggml.* keys of an opened GGUF file:
 * model "llama" gives SPM and model "gpt2" gives BPE, split by the
 * pre-tokenizer that tokenizer.ggml.pre names: "gpt-2" or "default" (or
 * no key), "llama-bpe" (Llama 3) or "qwen2". A missing required key gives
 * MR_ERR_NOT_FOUND naming it; another model or pre-tokenizer gives
 * MR_ERR_UNSUPPORTED.
 */
mr_status mr_tokenizer_from_gguf(const mr_gguf *gguf, mr_tokenizer **out, mr_error *err);

/* Free a tokenizer; NULL is allowed. */
void mr_tokenizer_free(mr_tokenizer *tok);

/*
 * Encode len bytes of text into token ids. With add_bos the BOS id comes
 * first (MR_ERR_INVALID_ARGUMENT if the vocabulary has none). With
 * parse_special, control and user-defined token texts in the input become
 * their ids. *n receives the number of ids the text needs, even when cap is
 * too small. Then at most cap ids are written and the call returns
 * MR_ERR_INVALID_ARGUMENT, so out = NULL with cap = 0 queries the size.
 */
mr_status mr_tokenizer_encode(const mr_tokenizer *tok, const char *text, size_t len,
                              bool add_bos, bool parse_special, int32_t *out, int64_t cap,
                              int64_t *n, mr_error *err);

/*
 * Decode n ids into bytes (not NUL-terminated). Control and unknown tokens
 * give their text only with render_special, and nothing otherwise. With
 * strip_leading_space an SPM tokenizer with add_space_prefix drops the
 * space at the start of the first piece that has text, which undoes the
 * prefix that encode added. *len receives the byte count needed; a cap too
 * small gives MR_ERR_INVALID_ARGUMENT after writing at most cap bytes.
 * An id outside [0, n_vocab) gives MR_ERR_INVALID_ARGUMENT.
 */
mr_status mr_tokenizer_decode(const mr_tokenizer *tok, const int32_t *ids, int64_t n,
                              bool strip_leading_space, bool render_special, char *out,
                              size_t cap, size_t *len, mr_error *err);

/* Decode one id into its bytes; the same rules as mr_tokenizer_decode. */
mr_status mr_tokenizer_token_to_piece(const mr_tokenizer *tok, int32_t id, bool render_special,
                                      char *out, size_t cap, size_t *len, mr_error *err);

mr_tokenizer_kind mr_tokenizer_get_kind(const mr_tokenizer *tok);
mr_tokenizer_pre mr_tokenizer_get_pre(const mr_tokenizer *tok); /* GPT-2's for SPM */
int64_t mr_tokenizer_n_vocab(const mr_tokenizer *tok);
int32_t mr_tokenizer_bos(const mr_tokenizer *tok); /* -1 if none */
int32_t mr_tokenizer_eos(const mr_tokenizer *tok); /* -1 if none */
int32_t mr_tokenizer_unk(const mr_tokenizer *tok); /* -1 if none */
bool mr_tokenizer_add_bos_default(const mr_tokenizer *tok);

/* Stored text of a token (not NUL-terminated; U+2581 and the GPT-2 byte
 * alphabet kept as stored), or NULL with *len = 0 for an id out of range. */
const char *mr_tokenizer_token_text(const mr_tokenizer *tok, int32_t id, size_t *len);
float mr_tokenizer_token_score(const mr_tokenizer *tok, int32_t id); /* 0 out of range */
mr_token_type mr_tokenizer_token_type(const mr_tokenizer *tok, int32_t id);

/* Id of the token with exactly this stored text, or -1. */
int32_t mr_tokenizer_find_token(const mr_tokenizer *tok, const char *text, size_t len);

/*
 * Create a tokenizer from a Hugging Face tokenizer.json file (path) or
 * its text (json, len bytes; name labels error messages). Supported
 * layouts of a "BPE" model:
 *
 *   - byte-level (GPT-2): pre_tokenizer ByteLevel with use_regex true and
 *     add_prefix_space false, no normalizer; gives MR_TOKENIZER_BPE;
 *   - byte-level with a Split by Llama 3's or Qwen2's pattern (the
 *     Regex string exactly as those models' files store it, behavior
 *     "Isolated", invert false) followed by ByteLevel with use_regex
 *     false; gives MR_TOKENIZER_BPE with that pre-tokenizer. An NFC
 *     normalizer, which Qwen2's file has, is accepted but not applied;
 *   - SentencePiece-style (Llama 2): byte_fallback true and either the
 *     normalizer Prepend "\u2581" + Replace " " -> "\u2581" or a
 *     Metaspace pre-tokenizer; gives MR_TOKENIZER_SPM with the merges'
 *     ranks as scores.
 *
 * added_tokens become control tokens (special true) or user-defined
 * ones. BOS comes from a TemplateProcessing post-processor that starts
 * with a special token (which also sets add_bos), and EOS is the first
 * of </s>, <|end_of_text|>, <|endoftext|>, <|im_end|> in the vocabulary.
 * Ids missing from vocab and added_tokens become empty control tokens.
 * Other model types and other pre-tokenizer patterns give
 * MR_ERR_UNSUPPORTED naming the setting;
 * a malformed file gives MR_ERR_FORMAT.
 */
mr_status mr_tokenizer_from_hf_json(const char *path, mr_tokenizer **out, mr_error *err);
mr_status mr_tokenizer_from_hf_json_text(const char *json, size_t len, const char *name,
                                         mr_tokenizer **out, mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_TOKENIZER_H */
