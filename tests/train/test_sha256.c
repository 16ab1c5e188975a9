/*
 * SHA-256 against the FIPS 180-4 example digests, across block
 * boundaries, and of a file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"
#include "test.h"

static void check_hex(const char *actual, const char *expected) {
    if (strcmp(actual, expected) != 0) {
        mr_test_fail(__FILE__, __LINE__, "digest %s, expected %s", actual, expected);
    }
}

static void sha256_fips_examples(void) {
    char hex[MR_SHA256_HEX_LENGTH + 1];
    mr_sha256_hex("", 0, hex);
    check_hex(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    mr_sha256_hex("abc", 3, hex);
    check_hex(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* 56 bytes: the padding needs a second block. */
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mr_sha256_hex(two_blocks, strlen(two_blocks), hex);
    check_hex(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void sha256_million_a_in_pieces(void) {
    /* One million 'a' fed in pieces of 997 bytes, which cross every block
     * boundary position. */
    char piece[997];
    memset(piece, 'a', sizeof piece);
    mr_sha256 hash;
    mr_sha256_init(&hash);
    size_t left = 1000000;
    while (left > 0) {
        size_t take = left < sizeof piece ? left : sizeof piece;
        mr_sha256_update(&hash, piece, take);
        left -= take;
    }
    uint8_t digest[32];
    mr_sha256_final(&hash, digest);
    char hex[MR_SHA256_HEX_LENGTH + 1];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    check_hex(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void sha256_of_file(void) {
    const char *base = getenv("TMPDIR");
    char path[256];
    snprintf(path, sizeof path, "%s/mr_sha256_XXXXXX", base != NULL ? base : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return;
    }
    CHECK_INT_EQ(write(fd, "abc", 3), 3);
    close(fd);

    char hex[MR_SHA256_HEX_LENGTH + 1];
    mr_error err;
    CHECK_STATUS(mr_sha256_file(path, hex, &err), MR_OK);
    check_hex(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);

    CHECK_STATUS(mr_sha256_file(path, hex, &err), MR_ERR_IO);
    CHECK(strstr(err.message, path) != NULL);
}

int main(void) {
    MR_RUN(sha256_fips_examples);
    MR_RUN(sha256_million_a_in_pieces);
    MR_RUN(sha256_of_file);
    return mr_test_finish();
}
