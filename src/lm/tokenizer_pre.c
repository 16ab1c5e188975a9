/*
 * The pre-tokenizers of byte-level BPE: each splits text into pieces that
 * the merge loop encodes one at a time. Three regular expressions are
 * written out by hand, without a regex library. The alternatives of each
 * are tried in order at every position, and a quantified run is as long as
 * the pattern allows.
 *
 * GPT-2 (OpenAI's encoder.py):
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * Llama 3 (the Split pre-tokenizer of meta-llama/Meta-Llama-3-8B's
 * tokenizer.json on Hugging Face, also OpenAI's cl100k_base):
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *
 * Qwen2 (the same field of Qwen2's tokenizer.json) is Llama 3's pattern with \p{N}
 * in place of \p{N}{1,3}, so each digit is a piece of its own.
 *
 * \p{L} and \p{N} are the Unicode general categories L* and N*, and \s is
 * the White_Space property, as in Python's regex module. A byte that is
 * not part of valid UTF-8 counts as a character of the "other" class, so
 * invalid input still splits and encodes, and every byte comes back on
 * decode. tests/fixtures/pretokenizer_reference.py checks the three
 * against Python's regex module.
 */
#include <stddef.h>
#include <stdint.h>

#include "tokenizer_internal.h"

enum char_class { CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE, CLASS_OTHER };

/* Decodes the character at text[i] and returns its class; *n receives its
 * byte length. */
static enum char_class class_at(const char *text, size_t len, size_t i, int *n) {
    int32_t cp;
    *n = mr_tok_utf8_decode((const unsigned char *)text + i, len - i, &cp);
    if (mr_tok_is_letter(cp)) {
        return CLASS_LETTER;
    }
    if (mr_tok_is_number(cp)) {
        return CLASS_NUMBER;
    }
    if (mr_tok_is_whitespace(cp)) {
        return CLASS_SPACE;
    }
    return CLASS_OTHER;
}

/* Returns the length of the contraction ('s 't 're 've 'm 'll 'd) at
 * text[i], or 0. The match is case-sensitive, as in GPT-2. */
static size_t contraction_at(const char *text, size_t len, size_t i) {
    if (text[i] != '\'' || i + 1 >= len) {
        return 0;
    }
    char c = text[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') {
        return 2;
    }
    if (i + 2 < len) {
        char d = text[i + 2];
        if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) {
            return 3;
        }
    }
    return 0;
}

/* Returns the end of the GPT-2 pre-token that starts at text[i] (i < len). */
static size_t gpt2_pretoken_end(const char *text, size_t len, size_t i) {
    size_t contraction = contraction_at(text, len, i);
    if (contraction > 0) {
        return i + contraction;
    }

    /* A run of letters, digits or other characters, optionally after one
     * space. */
    int n;
    enum char_class first = class_at(text, len, i, &n);
    size_t run_start = i;
    enum char_class run_class = first;
    if (text[i] == ' ' && i + 1 < len) {
        int n_next;
        enum char_class next = class_at(text, len, i + 1, &n_next);
        if (next != CLASS_SPACE) {
            run_start = i + 1;
            run_class = next;
        }
    }
    if (run_class != CLASS_SPACE) {
        size_t k = run_start;
        while (k < len && class_at(text, len, k, &n) == run_class) {
            k += (size_t)n;
        }
        return k;
    }

    /* White space at the end of the text is one pre-token. Before another
     * character, the run minus its last character is one; that last
     * character then joins the next run if it is a space, or else forms a
     * pre-token of its own. */
    size_t k = i;
    size_t last = i;
    while (k < len && class_at(text, len, k, &n) == CLASS_SPACE) {
        last = k;
        k += (size_t)n;
    }
    if (k == len || last == i) {
        return k;
    }
    return last;
}

/* ------------------------------------------------------------------------
 * Llama 3 and Qwen2
 * ------------------------------------------------------------------------ */

/* Decodes the character at text[i]; returns its class and stores its code
 * point (-1 for an invalid byte) and byte length. */
static enum char_class decode_at(const char *text, size_t len, size_t i, int32_t *cp, int *n) {
    *n = mr_tok_utf8_decode((const unsigned char *)text + i, len - i, cp);
    if (mr_tok_is_letter(*cp)) {
        return CLASS_LETTER;
    }
    if (mr_tok_is_number(*cp)) {
        return CLASS_NUMBER;
    }
    if (mr_tok_is_whitespace(*cp)) {
        return CLASS_SPACE;
    }
    return CLASS_OTHER;
}

static bool is_line_break(int32_t cp) { return cp == '\r' || cp == '\n'; }

/* Returns whether the character at text[i] matches ASCII letter lower
 * (given in lower case) case-insensitively; *n receives its byte length.
 * Unicode case folding also maps U+017F (long s) to 's', and Python's
 * regex module matches it under (?i), so this does too. */
static bool letter_nocase_at(const char *text, size_t len, size_t i, char lower, int *n) {
    if (i >= len) {
        return false;
    }
    int32_t cp;
    *n = mr_tok_utf8_decode((const unsigned char *)text + i, len - i, &cp);
    if (cp >= 'A' && cp <= 'Z') {
        cp += 'a' - 'A';
    }
    return cp == lower || (lower == 's' && cp == 0x17F);
}

/* Returns the length of the contraction at text[i] under (?i:'s|'t|'re|
 * 've|'m|'ll|'d), or 0. */
static size_t contraction_nocase_at(const char *text, size_t len, size_t i) {
    if (text[i] != '\'') {
        return 0;
    }
    static const char *const suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
        size_t end = i + 1;
        const char *suffix = suffixes[k];
        while (*suffix != '\0') {
            int n;
            if (!letter_nocase_at(text, len, end, *suffix, &n)) {
                break;
            }
            end += (size_t)n;
            suffix++;
        }
        if (*suffix == '\0') {
            return end - i;
        }
    }
    return 0;
}

/* Returns the end of the run of characters of class run_class from text[i]. */
static size_t class_run_end(const char *text, size_t len, size_t i, enum char_class run_class) {
    int n;
    while (i < len && class_at(text, len, i, &n) == run_class) {
        i += (size_t)n;
    }
    return i;
}

/* Returns the end of the Llama 3 pre-token that starts at text[i] (i <
 * len). max_digits is 3 for Llama 3 and 1 for Qwen2. */
static size_t llama3_pretoken_end(const char *text, size_t len, size_t i, int max_digits) {
    size_t contraction = contraction_nocase_at(text, len, i);
    if (contraction > 0) {
        return i + contraction;
    }

    int32_t cp;
    int n;
    enum char_class first = decode_at(text, len, i, &cp, &n);
    size_t next = i + (size_t)n;

    /* [^\r\n\p{L}\p{N}]?\p{L}+: letters, after at most one character that
     * is neither a line break, a letter nor a digit. */
    if (first == CLASS_LETTER) {
        return class_run_end(text, len, i, CLASS_LETTER);
    }
    int n_next;
    bool letter_next = next < len && class_at(text, len, next, &n_next) == CLASS_LETTER;
    if (first != CLASS_NUMBER && !is_line_break(cp) && letter_next) {
        return class_run_end(text, len, next, CLASS_LETTER);
    }

    /* \p{N}{1,max_digits} */
    if (first == CLASS_NUMBER) {
        size_t k = i;
        for (int digits = 0; digits < max_digits && k < len; digits++) {
            if (class_at(text, len, k, &n) != CLASS_NUMBER) {
                break;
            }
            k += (size_t)n;
        }
        return k;
    }

    /* ` ?[^\s\p{L}\p{N}]+[\r\n]*`: other characters after at most one
     * space, then any line breaks. */
    size_t run_start = i;
    if (text[i] == ' ' && next < len && class_at(text, len, next, &n_next) == CLASS_OTHER) {
        run_start = next;
    }
    if (run_start != i || first == CLASS_OTHER) {
        size_t k = class_run_end(text, len, run_start, CLASS_OTHER);
        while (k < len && (text[k] == '\r' || text[k] == '\n')) {
            k++;
        }
        return k;
    }

    /* Only white space is left. \s*[\r\n]+ takes the run up to its last
     * line break, if it has one. */
    size_t k = i;
    size_t last = i;
    size_t after_break = 0;
    while (k < len && decode_at(text, len, k, &cp, &n) == CLASS_SPACE) {
        last = k;
        k += (size_t)n;
        if (is_line_break(cp)) {
            after_break = k;
        }
    }
    if (after_break > 0) {
        return after_break;
    }

    /* \s+(?!\S)|\s+: the whole run at the end of the text; before another
     * character, the run minus its last character, or a lone character. */
    if (k == len || last == i) {
        return k;
    }
    return last;
}

size_t mr_tok_pretoken_end(mr_tokenizer_pre pre, const char *text, size_t len, size_t i) {
    switch (pre) {
    case MR_TOKENIZER_PRE_LLAMA3:
        return llama3_pretoken_end(text, len, i, 3);
    case MR_TOKENIZER_PRE_QWEN2:
        return llama3_pretoken_end(text, len, i, 1);
    case MR_TOKENIZER_PRE_GPT2:
    default:
        return gpt2_pretoken_end(text, len, i);
    }
}
