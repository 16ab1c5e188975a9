/*
 * libFuzzer target for the JSONL passage reader. Each input is read as a
 * corpus file from memory with mr_jsonl_reader_open_memory, every line is
 * parsed with mr_passage_parse, and every line is also turned into an
 * FTS5 expression with mr_retriever_match_expression. The results are
 * checked for consistency; an inconsistency aborts, so libFuzzer records
 * the input.
 *
 * The maximum line length is 256 bytes so that the length check is
 * reached by small inputs.
 *
 * Build and run: tests/fuzz/run.sh jsonl 300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "multiround/retriever.h"

/* Maximum line length of the fuzzed reader, in bytes. */
#define JSONL_FUZZ_MAX_LINE 256

/* Aborts with a message when an invariant is broken. */
static void jsonl_require(int condition, const char *invariant) {
    if (!condition) {
        fprintf(stderr, "fuzz_jsonl: invariant broken: %s\n", invariant);
        abort();
    }
}

/* Checks an accepted passage. */
static void jsonl_check_passage(const mr_passage *passage) {
    jsonl_require(passage->id != NULL && passage->id[0] != '\0', "an accepted id is not empty");
    jsonl_require(passage->text != NULL && passage->text[0] != '\0',
                  "an accepted text is not empty");
    jsonl_require(passage->title != NULL, "an accepted passage has a title string");
    if (passage->metadata != NULL) {
        cJSON *metadata = cJSON_Parse(passage->metadata);
        jsonl_require(cJSON_IsObject(metadata), "metadata is a JSON object");
        jsonl_require(cJSON_GetObjectItemCaseSensitive(metadata, "id") == NULL &&
                          cJSON_GetObjectItemCaseSensitive(metadata, "text") == NULL,
                      "metadata holds no id or text");
        cJSON_Delete(metadata);
    }
}

/* Checks that an FTS5 expression is quoted terms joined by " OR ". */
static void jsonl_check_expression(const char *query) {
    char *expression = NULL;
    int terms = -1;
    mr_error err;
    mr_status status = mr_retriever_match_expression(query, &expression, &terms, &err);
    jsonl_require(status == MR_OK, "every query gives an expression");
    jsonl_require(terms >= 0 && terms <= MR_RETRIEVER_MAX_TERMS, "term count in range");

    int quotes = 0;
    for (const char *c = expression; *c != '\0'; c++) {
        unsigned char byte = (unsigned char)*c;
        if (byte == '"') {
            quotes++;
            continue;
        }
        bool inside = quotes % 2 == 1;
        bool term_byte = (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') ||
                         (byte >= 'A' && byte <= 'Z') || byte >= 0x80;
        jsonl_require(!inside || term_byte, "quoted terms hold only letters, digits, UTF-8");
        jsonl_require(inside || byte == ' ' || byte == 'O' || byte == 'R',
                      "only \" OR \" joins the terms");
    }
    jsonl_require(quotes == 2 * terms, "two quotes per term");
    free(expression);
}

/*
 * Reads every line of data as a passage. Returns the number of rejected
 * lines and stores the number of accepted passages in *passages.
 */
static int jsonl_read_all(const uint8_t *data, size_t size, int *passages) {
    mr_jsonl_reader *reader = NULL;
    mr_error err;
    *passages = 0;
    mr_status status = mr_jsonl_reader_open_memory(data, size, "fuzz input",
                                                   JSONL_FUZZ_MAX_LINE, &reader, &err);
    jsonl_require(status == MR_OK, "a memory reader opens");

    int rejected = 0;
    int64_t previous_line = 0;
    for (;;) {
        const char *line = NULL;
        size_t length = 0;
        int64_t line_number = 0;
        mr_error_clear(&err);
        status = mr_jsonl_reader_next(reader, &line, &length, &line_number, &err);
        jsonl_require(status == MR_OK || status == MR_ERR_FORMAT, "reader status");
        if (status == MR_OK && line == NULL) {
            break;
        }
        jsonl_require(line_number > previous_line, "line numbers increase");
        previous_line = line_number;
        if (status != MR_OK) {
            jsonl_require(strstr(err.message, "fuzz input:") != NULL,
                          "a reader error names the input");
            rejected++;
            continue;
        }
        jsonl_require(length <= JSONL_FUZZ_MAX_LINE, "lines respect the limit");
        jsonl_require(strlen(line) == length, "a line holds no NUL and ends with one");
        jsonl_require(memchr(line, '\n', length) == NULL, "a line holds no newline");

        mr_passage passage;
        status = mr_passage_parse(line, length, "fuzz input", line_number, &passage, &err);
        if (status == MR_OK) {
            jsonl_check_passage(&passage);
            (*passages)++;
        } else {
            jsonl_require(status == MR_ERR_FORMAT, "parse status");
            jsonl_require(strstr(err.message, "fuzz input:") != NULL,
                          "a parse error names the input");
            jsonl_require(passage.id == NULL && passage.text == NULL,
                          "a rejected line leaves no passage");
            rejected++;
        }
        mr_passage_free(&passage);
        jsonl_check_expression(line);
    }
    mr_jsonl_reader_close(reader);
    return rejected;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int passages = 0;
    jsonl_read_all(data, size, &passages);
    return 0;
}
