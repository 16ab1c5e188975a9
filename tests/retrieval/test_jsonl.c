/*
 * The JSONL line reader and the passage parser: line numbers, line
 * endings, the length limit, UTF-8 validation, and the message for each
 * kind of bad passage line.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/retriever.h"
#include "test.h"

/* Checks that text contains fragment, printing both if not. */
#define CHECK_CONTAINS(text, fragment)                                             \
    do {                                                                           \
        if (strstr((text), (fragment)) == NULL) {                                  \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'", (text), \
                         (fragment));                                              \
        }                                                                          \
    } while (0)

static void reader_numbers_lines(void) {
    const char data[] = "{\"a\":1}\n\n   \n{\"b\":2}\r\n{\"c\":3}";
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    CHECK_STATUS(mr_jsonl_reader_open_memory(data, strlen(data), "mem.jsonl", 0, &reader,
                                             &err),
                 MR_OK);

    const char *line = NULL;
    size_t length = 0;
    int64_t number = 0;
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_STR_EQ(line, "{\"a\":1}");
    CHECK_INT_EQ(number, 1);

    /* Blank lines 2 and 3 are skipped but counted; "\r\n" is stripped. */
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_STR_EQ(line, "{\"b\":2}");
    CHECK_INT_EQ(length, 7);
    CHECK_INT_EQ(number, 4);

    /* The last line has no newline. */
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_STR_EQ(line, "{\"c\":3}");
    CHECK_INT_EQ(number, 5);

    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK(line == NULL);
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK(line == NULL);
    mr_jsonl_reader_close(reader);
}

static void reader_empty_input(void) {
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    CHECK_STATUS(mr_jsonl_reader_open_memory(NULL, 0, "empty", 0, &reader, &err), MR_OK);
    const char *line = "not reset";
    size_t length = 1;
    int64_t number = -1;
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK(line == NULL);
    CHECK_INT_EQ(number, 0);
    mr_jsonl_reader_close(reader);
}

static void reader_rejects_long_line(void) {
    /* A limit of 8 bytes: line 2 has 9 and is rejected, line 3 has 8. */
    const char data[] = "12345678\n123456789\n87654321\n";
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    CHECK_STATUS(mr_jsonl_reader_open_memory(data, strlen(data), "long.jsonl", 8, &reader,
                                             &err),
                 MR_OK);
    const char *line = NULL;
    size_t length = 0;
    int64_t number = 0;
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_INT_EQ(length, 8);

    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_ERR_FORMAT);
    CHECK_CONTAINS(err.message, "long.jsonl:2:");
    CHECK_CONTAINS(err.message, "limit of 8 bytes");
    CHECK_INT_EQ(number, 2);

    /* The reader goes on after the long line. */
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_STR_EQ(line, "87654321");
    CHECK_INT_EQ(number, 3);
    mr_jsonl_reader_close(reader);
}

static void reader_validates_utf8(void) {
    static const struct {
        const char *bytes;
        bool valid;
    } cases[] = {
        {"plain ascii", true},
        {"Ne\xc8\x9b" "i\xc8\x9b" "escu \xe2\x80\x99 \xf0\x9f\x98\x80", true}, /* ț, ’, an emoji */
        {"overlong \xc0\x80", false},
        {"overlong \xe0\x80\xaf", false},
        {"surrogate \xed\xa0\x80", false},
        {"above U+10FFFF \xf4\x90\x80\x80", false},
        {"lead byte \xf5\x80\x80\x80", false},
        {"lone continuation \x80", false},
        {"truncated \xe2\x80", false},
        {"latin-1 caf\xe9", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_jsonl_reader *reader = NULL;
        mr_error err;
        const char *data = cases[i].bytes;
        CHECK_STATUS(mr_jsonl_reader_open_memory(data, strlen(data), "utf8", 0, &reader, &err),
                     MR_OK);
        const char *line = NULL;
        size_t length = 0;
        int64_t number = 0;
        mr_status status = mr_jsonl_reader_next(reader, &line, &length, &number, &err);
        if (cases[i].valid) {
            CHECK_STATUS(status, MR_OK);
        } else {
            CHECK_STATUS(status, MR_ERR_FORMAT);
            CHECK_CONTAINS(err.message, "utf8:1: invalid UTF-8");
        }
        mr_jsonl_reader_close(reader);
    }
}

static void reader_rejects_nul_byte(void) {
    const char data[] = "{\"id\":1}\n{\"id\"\0:2}\n";
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    CHECK_STATUS(mr_jsonl_reader_open_memory(data, sizeof data - 1, "nul.jsonl", 0, &reader,
                                             &err),
                 MR_OK);
    const char *line = NULL;
    size_t length = 0;
    int64_t number = 0;
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_OK);
    CHECK_STATUS(mr_jsonl_reader_next(reader, &line, &length, &number, &err), MR_ERR_FORMAT);
    CHECK_CONTAINS(err.message, "nul.jsonl:2: NUL byte at byte 6");
    mr_jsonl_reader_close(reader);
}

static void reader_missing_file(void) {
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    CHECK_STATUS(mr_jsonl_reader_open("/nonexistent/corpus.jsonl", 0, &reader, &err),
                 MR_ERR_NOT_FOUND);
    CHECK(reader == NULL);
    CHECK_CONTAINS(err.message, "/nonexistent/corpus.jsonl");
}

static void parse_keeps_metadata(void) {
    const char *line = "{\"url\": \"http://x\", \"id\": 42, \"title\": \"T\", "
                       "\"text\": \"body\", \"tags\": [1, 2]}";
    mr_passage passage;
    mr_error err;
    CHECK_STATUS(mr_passage_parse(line, strlen(line), "c.jsonl", 1, &passage, &err), MR_OK);
    CHECK_STR_EQ(passage.id, "42");
    CHECK(passage.id_is_integer);
    CHECK_STR_EQ(passage.title, "T");
    CHECK_STR_EQ(passage.text, "body");
    CHECK_STR_EQ(passage.metadata, "{\"url\":\"http://x\",\"tags\":[1,2]}");
    mr_passage_free(&passage);
    CHECK(passage.id == NULL);
}

static void parse_optional_title(void) {
    const char *line = "{\"id\": \"doc-7\", \"text\": \"only text\"}";
    mr_passage passage;
    mr_error err;
    CHECK_STATUS(mr_passage_parse(line, strlen(line), "c.jsonl", 1, &passage, &err), MR_OK);
    CHECK_STR_EQ(passage.id, "doc-7");
    CHECK(!passage.id_is_integer);
    CHECK_STR_EQ(passage.title, "");
    CHECK(passage.metadata == NULL);
    mr_passage_free(&passage);

    line = "{\"id\": -9007199254740992, \"text\": \"t\"}";
    CHECK_STATUS(mr_passage_parse(line, strlen(line), "c.jsonl", 1, &passage, &err), MR_OK);
    CHECK_STR_EQ(passage.id, "-9007199254740992");
    mr_passage_free(&passage);
}

static void parse_reports_each_error(void) {
    static const struct {
        const char *line;
        const char *fragment;
    } cases[] = {
        {"{\"id\": 1, \"text\": \"x\"", "c.jsonl:7: malformed JSON"},
        {"not json", "c.jsonl:7: malformed JSON near byte 1"},
        {"[1, 2]", "the line is an array, not a JSON object"},
        {"{\"id\": 1, \"text\": \"x\"} {}", "text after the JSON value at byte 24"},
        {"{\"title\": \"t\", \"text\": \"x\"}", "missing \"id\""},
        {"{\"id\": 1, \"title\": \"t\"}", "missing \"text\""},
        {"{\"id\": 1, \"text\": \"\"}", "\"text\" is empty"},
        {"{\"id\": 1, \"text\": 5}", "\"text\" is a number"},
        {"{\"id\": 1.5, \"text\": \"x\"}", "\"id\" is 1.5, not an integer"},
        {"{\"id\": 1e300, \"text\": \"x\"}", "not an integer of magnitude at most 2^53"},
        {"{\"id\": true, \"text\": \"x\"}", "\"id\" is a boolean"},
        {"{\"id\": [1], \"text\": \"x\"}", "\"id\" is an array"},
        {"{\"id\": null, \"text\": \"x\"}", "\"id\" is null"},
        {"{\"id\": \"\", \"text\": \"x\"}", "\"id\" is an empty string"},
        {"{\"id\": 1, \"text\": \"x\", \"title\": {}}", "\"title\" is an object"},
        {"{\"id\": 1, \"id\": 2, \"text\": \"x\"}", "the field \"id\" appears twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_passage passage;
        mr_error err;
        mr_error_clear(&err);
        const char *line = cases[i].line;
        CHECK_STATUS(mr_passage_parse(line, strlen(line), "c.jsonl", 7, &passage, &err),
                     MR_ERR_FORMAT);
        CHECK_CONTAINS(err.message, cases[i].fragment);
        CHECK_CONTAINS(err.message, "c.jsonl:7:");
        CHECK(passage.id == NULL);
        CHECK(passage.text == NULL);
        CHECK(passage.metadata == NULL);
    }
}

int main(void) {
    MR_RUN(reader_numbers_lines);
    MR_RUN(reader_empty_input);
    MR_RUN(reader_rejects_long_line);
    MR_RUN(reader_validates_utf8);
    MR_RUN(reader_rejects_nul_byte);
    MR_RUN(reader_missing_file);
    MR_RUN(parse_keeps_metadata);
    MR_RUN(parse_optional_title);
    MR_RUN(parse_reports_each_error);
    return mr_test_finish();
}
