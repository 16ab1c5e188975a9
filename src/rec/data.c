/*
 * Sequential-recommendation datasets: the one-line-per-user text format
 * of the S3-Rec release, the preprocessing of Ada-Retrieval's
 * preprocess/prepare_data.py (repeated items dropped, short users
 * dropped), the leave-one-out split, model inputs and negative sampling.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "multiround/rec.h"

/*
 * Largest file read. Every id takes at least two bytes with its separator,
 * so a file this size has fewer than 2^30 ids, and sequence counts and
 * positions fit in int32.
 */
#define REC_MAX_FILE_BYTES ((size_t)1 << 31)

/*
 * Largest id accepted.
 * NOTE: rec.h allows ids up to 2^31 - 1, but n_users and n_items are the
 * largest id + 1 and must fit in int32, so the largest id is 2^31 - 2.
 */
#define REC_MAX_ID (INT32_MAX - 1)

/* Users with fewer distinct items have no training example left after the
 * validation and test targets are taken. */
#define REC_MIN_ITEMS 3

/* Draws per negative slot before the slot falls back to padding id 0. */
#define REC_MAX_REJECTIONS 100

/* At most this many bytes of a bad token are quoted in an error. */
#define REC_TOKEN_QUOTE_MAX 32

/* ------------------------------------------------------------------------
 * Growable arrays
 * ------------------------------------------------------------------------ */

typedef struct i32_array {
    int32_t *data;
    int64_t count;
    int64_t capacity;
} i32_array;

typedef struct i64_array {
    int64_t *data;
    int64_t count;
    int64_t capacity;
} i64_array;

/* Makes room for `extra` more elements; returns false when memory runs out. */
static bool i32_array_reserve(i32_array *array, int64_t extra) {
    if (array->count + extra <= array->capacity) {
        return true;
    }
    int64_t capacity = array->capacity > 0 ? array->capacity : 1024;
    while (capacity < array->count + extra) {
        capacity *= 2;
    }
    int32_t *data = realloc(array->data, (size_t)capacity * sizeof *data);
    if (data == NULL) {
        return false;
    }
    array->data = data;
    array->capacity = capacity;
    return true;
}

static bool i64_array_push(i64_array *array, int64_t value) {
    if (array->count == array->capacity) {
        int64_t capacity = array->capacity > 0 ? array->capacity * 2 : 1024;
        int64_t *data = realloc(array->data, (size_t)capacity * sizeof *data);
        if (data == NULL) {
            return false;
        }
        array->data = data;
        array->capacity = capacity;
    }
    array->data[array->count++] = value;
    return true;
}

/* ------------------------------------------------------------------------
 * Hash tables keyed by positive ids (open addressing, linear probing)
 * ------------------------------------------------------------------------ */

/* Fibonacci hashing of an id into a table of 2^bits slots. */
static uint64_t id_slot(int32_t id, int bits) {
    return ((uint64_t)(uint32_t)id * 0x9e3779b97f4a7c15ull) >> (64 - bits);
}

/* The user ids seen so far, each with the line that gave it. Key 0 marks an
 * empty slot, which is safe because ids start at 1. */
typedef struct user_set {
    int32_t *keys;
    int64_t *lines;
    int bits;
    int64_t count;
} user_set;

/* Doubles the table and reinserts every user. */
static bool user_set_grow(user_set *set) {
    int bits = set->bits > 0 ? set->bits + 1 : 12;
    size_t slots = (size_t)1 << bits;
    int32_t *keys = calloc(slots, sizeof *keys);
    int64_t *lines = malloc(slots * sizeof *lines);
    if (keys == NULL || lines == NULL) {
        free(keys);
        free(lines);
        return false;
    }

    size_t old_slots = set->bits > 0 ? (size_t)1 << set->bits : 0;
    for (size_t i = 0; i < old_slots; i++) {
        if (set->keys[i] == 0) {
            continue;
        }
        uint64_t slot = id_slot(set->keys[i], bits);
        while (keys[slot] != 0) {
            slot = (slot + 1) & (slots - 1);
        }
        keys[slot] = set->keys[i];
        lines[slot] = set->lines[i];
    }

    free(set->keys);
    free(set->lines);
    set->keys = keys;
    set->lines = lines;
    set->bits = bits;
    return true;
}

/*
 * Adds user given on line. Returns 0 when the user is new, the line of the
 * earlier occurrence when it is not, and -1 when memory runs out.
 */
static int64_t user_set_add(user_set *set, int32_t user, int64_t line) {
    if (set->bits == 0 || 2 * (set->count + 1) > ((int64_t)1 << set->bits)) {
        if (!user_set_grow(set)) {
            return -1;
        }
    }

    uint64_t mask = ((uint64_t)1 << set->bits) - 1;
    uint64_t slot = id_slot(user, set->bits);
    while (set->keys[slot] != 0) {
        if (set->keys[slot] == user) {
            return set->lines[slot];
        }
        slot = (slot + 1) & mask;
    }
    set->keys[slot] = user;
    set->lines[slot] = line;
    set->count++;
    return 0;
}

/*
 * The items seen on the current line. A slot belongs to the current line
 * only when its stamp equals the line's stamp, so moving to the next line
 * costs nothing and the table is never cleared.
 */
typedef struct item_set {
    int32_t *keys;
    uint64_t *stamps;
    int bits;
    uint64_t stamp;
} item_set;

/* Starts a new line whose items number at most `count`; returns false when
 * memory runs out. */
static bool item_set_begin(item_set *set, int64_t count) {
    int bits = set->bits > 0 ? set->bits : 8;
    while (((int64_t)1 << bits) < 2 * count) {
        bits++;
    }
    if (bits != set->bits) {
        size_t slots = (size_t)1 << bits;
        int32_t *keys = malloc(slots * sizeof *keys);
        uint64_t *stamps = calloc(slots, sizeof *stamps);
        if (keys == NULL || stamps == NULL) {
            free(keys);
            free(stamps);
            return false;
        }
        free(set->keys);
        free(set->stamps);
        set->keys = keys;
        set->stamps = stamps;
        set->bits = bits;
    }
    set->stamp++;
    return true;
}

/* Adds item to the current line's set; returns false when it was there. */
static bool item_set_add(item_set *set, int32_t item) {
    uint64_t mask = ((uint64_t)1 << set->bits) - 1;
    uint64_t slot = id_slot(item, set->bits);
    while (set->stamps[slot] == set->stamp) {
        if (set->keys[slot] == item) {
            return false;
        }
        slot = (slot + 1) & mask;
    }
    set->keys[slot] = item;
    set->stamps[slot] = set->stamp;
    return true;
}

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

typedef struct parser {
    const char *path;
    int64_t line;
    mr_error *err;
} parser;

static bool is_separator(char c) {
    /* A '\r' is a separator so that files with Windows line ends load. */
    return c == ' ' || c == '\t' || c == '\r';
}

/* Writes token as a printable quote: at most REC_TOKEN_QUOTE_MAX bytes,
 * other bytes than printable ASCII shown as '?'. */
static void quote_token(const char *token, size_t length, char *out, size_t size) {
    size_t shown = length < REC_TOKEN_QUOTE_MAX ? length : REC_TOKEN_QUOTE_MAX;
    size_t n = 0;
    for (size_t i = 0; i < shown && n + 1 < size; i++) {
        unsigned char c = (unsigned char)token[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    const char *more = shown < length ? "..." : "";
    for (const char *m = more; *m != '\0' && n + 1 < size; m++) {
        out[n++] = *m;
    }
    out[n] = '\0';
}

/*
 * Parses the decimal id token[0..length) into *id. Accepts digits only, with
 * a value from 1 to REC_MAX_ID. On failure fills the error with the file,
 * line, token and the range expected; what names the id ("user id" or
 * "item id").
 */
static mr_status parse_id(const parser *p, const char *token, size_t length,
                          const char *what, int32_t *id) {
    int64_t value = 0;
    bool digits_only = true;
    for (size_t i = 0; i < length; i++) {
        char c = token[i];
        if (c < '0' || c > '9') {
            digits_only = false;
            break;
        }
        /* Stop growing past the limit so that long tokens cannot overflow. */
        if (value <= REC_MAX_ID) {
            value = value * 10 + (c - '0');
        }
    }

    if (digits_only && value >= 1 && value <= REC_MAX_ID) {
        *id = (int32_t)value;
        return MR_OK;
    }

    char quoted[REC_TOKEN_QUOTE_MAX + 8];
    quote_token(token, length, quoted, sizeof quoted);
    if (!digits_only && token[0] == '-' && length > 1) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "rec: %s line %" PRId64 ": %s '%s' is negative; expected a "
                            "decimal integer from 1 to %d",
                            p->path, p->line, what, quoted, REC_MAX_ID);
    }
    if (!digits_only) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "rec: %s line %" PRId64 ": invalid %s '%s'; expected a decimal "
                            "integer from 1 to %d, with ids separated by spaces or tabs",
                            p->path, p->line, what, quoted, REC_MAX_ID);
    }
    if (value == 0) {
        return mr_error_set(p->err, MR_ERR_FORMAT,
                            "rec: %s line %" PRId64 ": %s '%s' is 0, which is reserved for "
                            "padding; expected a decimal integer from 1 to %d",
                            p->path, p->line, what, quoted, REC_MAX_ID);
    }
    return mr_error_set(p->err, MR_ERR_FORMAT,
                        "rec: %s line %" PRId64 ": %s '%s' is too large; expected a decimal "
                        "integer from 1 to %d",
                        p->path, p->line, what, quoted, REC_MAX_ID);
}

/* Returns the start of the next token in [*cursor, end) and its length in
 * *length, or NULL at the end of the line. */
static const char *next_token(const char **cursor, const char *end, size_t *length) {
    const char *c = *cursor;
    while (c < end && is_separator(*c)) {
        c++;
    }
    if (c == end) {
        *cursor = c;
        return NULL;
    }

    const char *start = c;
    while (c < end && !is_separator(*c)) {
        c++;
    }
    *length = (size_t)(c - start);
    *cursor = c;
    return start;
}

static mr_status out_of_memory(const parser *p) {
    return mr_error_set(p->err, MR_ERR_NO_MEMORY,
                        "rec: out of memory while reading %s at line %" PRId64, p->path,
                        p->line);
}

/* The dataset under construction. */
typedef struct load_state {
    parser parser;
    user_set users;
    item_set line_items;
    i32_array items;     /* kept sequences, then the line being read */
    i32_array user_ids;  /* kept users */
    i64_array offsets;   /* start of each kept sequence, then the end */
    int64_t lines_with_users;
    int64_t users_dropped;
    int64_t repeats_dropped;
    int32_t max_user;
    int32_t max_item;
} load_state;

/*
 * Reads one line [start, end): the user id, then its items appended to
 * state->items. Drops repeated items (the first occurrence stays) and, when
 * fewer than REC_MIN_ITEMS remain, the whole user. Blank lines add nothing.
 */
static mr_status load_line(load_state *state, const char *start, const char *end) {
    const char *cursor = start;
    size_t length = 0;
    const char *token = next_token(&cursor, end, &length);
    if (token == NULL) {
        return MR_OK;
    }

    int32_t user = 0;
    mr_status status = parse_id(&state->parser, token, length, "user id", &user);
    if (status != MR_OK) {
        return status;
    }
    int64_t earlier_line = user_set_add(&state->users, user, state->parser.line);
    if (earlier_line < 0) {
        return out_of_memory(&state->parser);
    }
    if (earlier_line > 0) {
        return mr_error_set(state->parser.err, MR_ERR_FORMAT,
                            "rec: %s line %" PRId64 ": user id %d was already given on line "
                            "%" PRId64 "; each user must have exactly one line",
                            state->parser.path, state->parser.line, user, earlier_line);
    }
    state->lines_with_users++;

    /* Parse every item of the line into the free space after the kept
     * sequences. */
    int64_t first = state->items.count;
    while ((token = next_token(&cursor, end, &length)) != NULL) {
        int32_t item = 0;
        status = parse_id(&state->parser, token, length, "item id", &item);
        if (status != MR_OK) {
            return status;
        }
        if (!i32_array_reserve(&state->items, 1)) {
            return out_of_memory(&state->parser);
        }
        state->items.data[state->items.count++] = item;
    }

    /* Keep the first occurrence of each item, in place. */
    int64_t parsed = state->items.count - first;
    if (!item_set_begin(&state->line_items, parsed)) {
        return out_of_memory(&state->parser);
    }
    int64_t kept = first;
    for (int64_t i = first; i < state->items.count; i++) {
        int32_t item = state->items.data[i];
        if (item_set_add(&state->line_items, item)) {
            state->items.data[kept++] = item;
        }
    }
    state->repeats_dropped += state->items.count - kept;

    if (kept - first < REC_MIN_ITEMS) {
        state->items.count = first;
        state->users_dropped++;
        return MR_OK;
    }

    state->items.count = kept;
    if (!i32_array_reserve(&state->user_ids, 1) || !i64_array_push(&state->offsets, first)) {
        return out_of_memory(&state->parser);
    }
    state->user_ids.data[state->user_ids.count++] = user;
    if (user > state->max_user) {
        state->max_user = user;
    }
    for (int64_t i = first; i < kept; i++) {
        if (state->items.data[i] > state->max_item) {
            state->max_item = state->items.data[i];
        }
    }
    return MR_OK;
}

/* Lists the training examples: every position of each sequence except the
 * last two, in file order. */
static mr_status build_training_examples(mr_rec_data *data, mr_error *err) {
    int64_t total = 0;
    for (int64_t s = 0; s < data->n_sequences; s++) {
        total += data->offsets[s + 1] - data->offsets[s] - 2;
    }

    data->n_train = total;
    data->train_seq = malloc((size_t)(total > 0 ? total : 1) * sizeof *data->train_seq);
    data->train_pos = malloc((size_t)(total > 0 ? total : 1) * sizeof *data->train_pos);
    if (data->train_seq == NULL || data->train_pos == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "rec: out of memory for %" PRId64 " training examples of %s", total,
                            data->path);
    }

    int64_t example = 0;
    for (int64_t s = 0; s < data->n_sequences; s++) {
        int64_t length = data->offsets[s + 1] - data->offsets[s];
        for (int64_t pos = 0; pos < length - 2; pos++) {
            data->train_seq[example] = (int32_t)s;
            data->train_pos[example] = (int32_t)pos;
            example++;
        }
    }
    return MR_OK;
}

static void load_state_free(load_state *state) {
    free(state->users.keys);
    free(state->users.lines);
    free(state->line_items.keys);
    free(state->line_items.stamps);
    free(state->items.data);
    free(state->user_ids.data);
    free(state->offsets.data);
}

/* Reads every line of text[0..size) into state. */
static mr_status parse_text(load_state *state, const char *text, size_t size) {
    const char *end = text + size;
    const char *line = text;
    while (line < end) {
        const char *line_end = memchr(line, '\n', (size_t)(end - line));
        if (line_end == NULL) {
            line_end = end;
        }
        state->parser.line++;
        mr_status status = load_line(state, line, line_end);
        if (status != MR_OK) {
            return status;
        }
        line = line_end + 1;
    }
    return MR_OK;
}

mr_status mr_rec_data_load(const char *path, mr_rec_data **out, mr_error *err) {
    *out = NULL;
    void *text = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, REC_MAX_FILE_BYTES, &text, &size, err);
    if (status != MR_OK) {
        return status;
    }

    load_state state;
    memset(&state, 0, sizeof state);
    state.parser.path = path;
    state.parser.err = err;
    status = parse_text(&state, text, size);
    free(text);
    if (status != MR_OK) {
        load_state_free(&state);
        return status;
    }

    /* An empty file or one where every user was dropped leaves nothing to
     * train or evaluate on. */
    if (state.lines_with_users == 0) {
        load_state_free(&state);
        if (state.parser.line == 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "rec: %s is empty; expected one line 'user item item ...' "
                                "per user",
                                path);
        }
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: %s has no users: its %" PRId64 " lines are all blank; "
                            "expected one line 'user item item ...' per user",
                            path, state.parser.line);
    }
    if (state.user_ids.count == 0) {
        load_state_free(&state);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "rec: every one of the %" PRId64 " users in %s has fewer than %d "
                            "distinct items (lines 1 to %" PRId64 "); each user needs at "
                            "least %d for the train, validation and test targets",
                            state.lines_with_users, path, REC_MIN_ITEMS, state.parser.line, REC_MIN_ITEMS);
    }
    if (!i64_array_push(&state.offsets, state.items.count)) {
        load_state_free(&state);
        return out_of_memory(&state.parser);
    }

    /* Hand the arrays over to the dataset. */
    mr_rec_data *data = calloc(1, sizeof *data);
    if (data == NULL) {
        load_state_free(&state);
        return out_of_memory(&state.parser);
    }
    snprintf(data->path, sizeof data->path, "%s", path);
    data->n_users = state.max_user + 1;
    data->n_items = state.max_item + 1;
    data->n_sequences = state.user_ids.count;
    data->user_ids = state.user_ids.data;
    data->offsets = state.offsets.data;
    data->items = state.items.data;
    data->n_lines = state.parser.line;
    data->n_users_dropped = state.users_dropped;
    data->n_repeats_dropped = state.repeats_dropped;
    state.user_ids.data = NULL;
    state.offsets.data = NULL;
    state.items.data = NULL;
    load_state_free(&state);

    status = build_training_examples(data, err);
    if (status != MR_OK) {
        mr_rec_data_free(data);
        return status;
    }

    if (data->n_users_dropped > 0) {
        mr_log(MR_LOG_WARN, "rec",
               "%s: dropped %" PRId64 " user%s with fewer than %d distinct items", path,
               data->n_users_dropped, data->n_users_dropped == 1 ? "" : "s", REC_MIN_ITEMS);
    }
    int64_t interactions = data->offsets[data->n_sequences];
    if (data->n_items > 2 * interactions + 1000) {
        /* An id's row has D = 64 floats (the default) and a bias. */
        double gigabytes = (double)data->n_items * 65.0 * 4.0 / 1e9;
        mr_log(MR_LOG_WARN, "rec",
               "%s: item ids go up to %d, far more than the %" PRId64 " interactions. The "
               "model keeps a row for every id up to the largest, about %.2f GB per copy of "
               "the weights at D 64. model.safetensors holds one copy, the checkpoint three "
               "and training four in memory, so renumbering the items 1..N saves memory and "
               "disk",
               path, data->n_items - 1, interactions, gigabytes);
    }
    mr_log(MR_LOG_INFO, "rec",
           "loaded %s: %" PRId64 " users, %d item ids (largest %d), %" PRId64
           " interactions (%" PRId64 " repeats removed), %" PRId64 " training examples",
           path, data->n_sequences, data->n_items, data->n_items - 1, interactions,
           data->n_repeats_dropped, data->n_train);
    *out = data;
    return MR_OK;
}

void mr_rec_data_free(mr_rec_data *data) {
    if (data == NULL) {
        return;
    }
    free(data->user_ids);
    free(data->offsets);
    free(data->items);
    free(data->train_seq);
    free(data->train_pos);
    free(data);
}

/* ------------------------------------------------------------------------
 * Split, inputs and negatives
 * ------------------------------------------------------------------------ */

const char *mr_rec_split_name(mr_rec_split split) {
    switch (split) {
    case MR_REC_TRAIN: return "train";
    case MR_REC_VALID: return "valid";
    case MR_REC_TEST: return "test";
    }
    return "unknown";
}

/* Returns the validation or test target's position; -1 for MR_REC_TRAIN,
 * whose targets are listed in train_seq and train_pos instead. */
int64_t mr_rec_data_target_pos(const mr_rec_data *data, int64_t s, mr_rec_split split) {
    assert(s >= 0);
    assert(s < data->n_sequences);
    int64_t length = data->offsets[s + 1] - data->offsets[s];
    switch (split) {
    case MR_REC_VALID: return length - 2;
    case MR_REC_TEST: return length - 1;
    case MR_REC_TRAIN: break;
    }
    return -1;
}

/* Copies the last max_len items before target_pos, left-padded with 0.
 * target_pos may equal the sequence length: the input for the item after
 * the whole sequence. */
void mr_rec_data_input(const mr_rec_data *data, int64_t s, int64_t target_pos, int max_len,
                       int32_t *out) {
    assert(s >= 0);
    assert(s < data->n_sequences);
    assert(target_pos >= 0);
    assert(target_pos <= data->offsets[s + 1] - data->offsets[s]);
    assert(max_len >= 0);

    const int32_t *sequence = data->items + data->offsets[s];
    int64_t count = target_pos < max_len ? target_pos : max_len;
    int64_t padding = max_len - count;
    memset(out, 0, (size_t)padding * sizeof *out);
    memcpy(out + padding, sequence + target_pos - count, (size_t)count * sizeof *out);
}

/* Scans the sequence linearly. Sequences in the shipped data have at most
 * 296 items, so a scan is cheap and the dataset needs no per-user index. */
bool mr_rec_data_contains(const mr_rec_data *data, int64_t s, int32_t item) {
    assert(s >= 0);
    assert(s < data->n_sequences);
    const int32_t *sequence = data->items + data->offsets[s];
    int64_t length = data->offsets[s + 1] - data->offsets[s];
    for (int64_t i = 0; i < length; i++) {
        if (sequence[i] == item) {
            return true;
        }
    }
    return false;
}

/* Draws each slot until it misses the sequence, giving up with id 0 after
 * REC_MAX_REJECTIONS draws. The draws consumed depend only on rng and the
 * data, so equal rng states give equal negatives. */
void mr_rec_sample_negatives(const mr_rec_data *data, int64_t s, int count, mr_rng *rng,
                             int32_t *out) {
    assert(s >= 0);
    assert(s < data->n_sequences);
    for (int i = 0; i < count; i++) {
        out[i] = 0;
        if (data->n_items < 2) {
            continue;
        }
        for (int attempt = 0; attempt < REC_MAX_REJECTIONS; attempt++) {
            int32_t item = (int32_t)mr_rng_below(rng, (uint64_t)data->n_items - 1) + 1;
            if (!mr_rec_data_contains(data, s, item)) {
                out[i] = item;
                break;
            }
        }
    }
}
