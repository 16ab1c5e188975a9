/*
 * UTF-8 decoding and encoding, and the Unicode classes of the GPT-2
 * pre-tokenizer: letters, numbers and white space.
 */
#include <stddef.h>
#include <stdint.h>

#include "tokenizer_internal.h"
#include "tokenizer_unicode_tables.h"

int mr_tok_utf8_decode(const unsigned char *text, size_t len, int32_t *cp) {
    unsigned char lead = text[0];
    *cp = -1;
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    }

    /* The length and the smallest code point of each lead byte; anything
     * else (a continuation byte, 0xC0, 0xC1, 0xF5..0xFF) is invalid. */
    int n;
    uint32_t min;
    uint32_t value;
    if (lead >= 0xC2 && lead <= 0xDF) {
        n = 2, min = 0x80, value = lead & 0x1Fu;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        n = 3, min = 0x800, value = lead & 0x0Fu;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        n = 4, min = 0x10000, value = lead & 0x07u;
    } else {
        return 1;
    }
    if ((size_t)n > len) {
        return 1;
    }

    for (int i = 1; i < n; i++) {
        if ((text[i] & 0xC0) != 0x80) {
            return 1;
        }
        value = (value << 6) | (text[i] & 0x3Fu);
    }
    if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
        return 1;
    }
    *cp = (int32_t)value;
    return n;
}

int mr_tok_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Returns whether cp lies in one of n sorted inclusive ranges. */
static bool in_ranges(const uint32_t (*ranges)[2], size_t n, int32_t cp) {
    if (cp < 0) {
        return false;
    }
    size_t low = 0;
    size_t high = n;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if ((uint32_t)cp < ranges[mid][0]) {
            high = mid;
        } else if ((uint32_t)cp > ranges[mid][1]) {
            low = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

bool mr_tok_is_letter(int32_t cp) {
    if (cp < 0x80) {
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    }
    return in_ranges(mr_tok_letter_ranges,
                     sizeof mr_tok_letter_ranges / sizeof mr_tok_letter_ranges[0], cp);
}

bool mr_tok_is_number(int32_t cp) {
    if (cp < 0x80) {
        return cp >= '0' && cp <= '9';
    }
    return in_ranges(mr_tok_number_ranges,
                     sizeof mr_tok_number_ranges / sizeof mr_tok_number_ranges[0], cp);
}

/*
 * The White_Space property of Unicode's PropList.txt, which the Python
 * regex module and llama.cpp use for \s. NOTE: JavaScript's \s differs on
 * two code points: it excludes U+0085 and includes U+FEFF.
 */
bool mr_tok_is_whitespace(int32_t cp) {
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}
