/*
 * Tokenization of data rows into training examples: prompt and
 * completion pairs, chat conversations, preference pairs and classifier
 * texts, with loss targets on the tokens that are learnt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

void train_examples_free(train_example *examples, int n) {
    if (examples == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < examples[i].n_seq; k++) {
            free(examples[i].seq[k].tokens);
            free(examples[i].seq[k].targets);
        }
    }
    free(examples);
}

/* Encodes text into a new array *ids of *n ids, with BOS when the
 * tokenizer's metadata asks for it. */
static mr_status encode(const mr_tokenizer *tok, const char *text, bool parse_special,
                        int32_t **ids, int *n, mr_error *err) {
    *ids = NULL;
    *n = 0;
    bool add_bos = mr_tokenizer_add_bos_default(tok) && mr_tokenizer_bos(tok) >= 0;
    size_t len = strlen(text);
    int64_t needed = 0;
    mr_status status = mr_tokenizer_encode(tok, text, len, add_bos, parse_special, NULL, 0,
                                           &needed, NULL);
    if (status != MR_OK && needed == 0) {
        return mr_tokenizer_encode(tok, text, len, add_bos, parse_special, NULL, 0, &needed,
                                   err);
    }
    /* One spare slot for an EOS that the caller may append. */
    *ids = malloc((size_t)(needed + 1) * sizeof **ids);
    if (*ids == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory for %lld tokens",
                            (long long)needed);
    }
    status = mr_tokenizer_encode(tok, text, len, add_bos, parse_special, *ids, needed, &needed,
                                 err);
    if (status != MR_OK) {
        free(*ids);
        *ids = NULL;
        return status;
    }
    *n = (int)needed;
    return MR_OK;
}

/* Length of the common prefix of two id arrays. */
static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) {
        i++;
    }
    return i;
}

/* Makes seq from ids (taken over) with targets -1 everywhere. */
static mr_status sequence_from_ids(int32_t *ids, int n, train_sequence *seq, mr_error *err) {
    seq->tokens = ids;
    seq->length = n;
    seq->targets = malloc((size_t)(n > 0 ? n : 1) * sizeof *seq->targets);
    if (seq->targets == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    for (int i = 0; i < n; i++) {
        seq->targets[i] = -1;
    }
    return MR_OK;
}

/* Marks tokens [from, to) as learnt: the position before each predicts it. */
static void learn_span(train_sequence *seq, int from, int to) {
    for (int i = from > 1 ? from : 1; i < to && i < seq->length; i++) {
        seq->targets[i - 1] = seq->tokens[i];
    }
}

/* Removes count tokens starting at from, targets included. */
static void remove_tokens(train_sequence *seq, int from, int count) {
    int rest = seq->length - from - count;
    memmove(seq->tokens + from, seq->tokens + from + count, (size_t)rest * sizeof *seq->tokens);
    memmove(seq->targets + from, seq->targets + from + count,
            (size_t)rest * sizeof *seq->targets);
    seq->length -= count;
}

/*
 * Shortens seq to max_length. Tokens of the prompt (before boundary) go
 * first, from the left but after a BOS, so that the end of the prompt
 * still leads into the completion; then the completion loses its end.
 */
static void truncate_sequence(train_sequence *seq, int boundary, bool has_bos, int max_length) {
    int over = seq->length - max_length;
    if (over <= 0) {
        return;
    }
    int start = has_bos ? 1 : 0;
    int droppable = boundary - 1 - start;
    int drop = over < droppable ? over : droppable;
    if (drop > 0) {
        remove_tokens(seq, start, drop);
    }
    if (seq->length > max_length) {
        seq->length = max_length;
    }
    seq->targets[seq->length - 1] = -1;
}

mr_status train_encode_pair(trainer *t, const char *prompt, const char *completion,
                            bool add_eos, train_sequence *seq, mr_error *err) {
    memset(seq, 0, sizeof *seq);
    size_t lp = strlen(prompt), lc = strlen(completion);
    char *joined = malloc(lp + lc + 1);
    if (joined == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory");
    }
    memcpy(joined, prompt, lp);
    memcpy(joined + lp, completion, lc + 1);

    /* The completion's ids are those after the longest common prefix of
     * the joint encoding and the prompt's own, as mr_llama_logprobs()
     * counts them. */
    int32_t *full = NULL, *head = NULL;
    int n_full = 0, n_head = 0;
    mr_status status = encode(t->tok, joined, false, &full, &n_full, err);
    if (status == MR_OK) {
        status = encode(t->tok, prompt, false, &head, &n_head, err);
    }
    free(joined);
    if (status != MR_OK) {
        free(full);
        free(head);
        return status;
    }
    int boundary = common_prefix(full, n_full, head, n_head);
    bool has_bos = n_head > 0 && head[0] == mr_tokenizer_bos(t->tok) &&
                   mr_tokenizer_add_bos_default(t->tok);
    free(head);
    int32_t eos = mr_tokenizer_eos(t->tok);
    if (add_eos && eos >= 0) {
        full[n_full++] = eos;
    }

    status = sequence_from_ids(full, n_full, seq, err);
    if (status != MR_OK) {
        free(full);
        seq->tokens = NULL;
        return status;
    }
    learn_span(seq, boundary, n_full);
    truncate_sequence(seq, boundary, has_bos, t->o.max_length);
    return MR_OK;
}

/* Encodes a chat conversation with the run's template. Each assistant
 * message's tokens (with the template's end-of-turn marker) are learnt. */
static mr_status encode_chat(trainer *t, mr_chat_template template_kind, const train_row *row,
                             train_sequence *seq, mr_error *err) {
    memset(seq, 0, sizeof *seq);
    char *text = NULL;
    size_t len = 0;
    mr_status status = mr_chat_render(template_kind, row->messages, row->n_messages, false,
                                      &text, &len, err);
    int32_t *full = NULL;
    int n_full = 0;
    if (status == MR_OK) {
        status = encode(t->tok, text, true, &full, &n_full, err);
    }
    free(text);
    if (status == MR_OK) {
        status = sequence_from_ids(full, n_full, seq, err);
        if (status != MR_OK) {
            free(full);
            seq->tokens = NULL;
        }
    }

    /* An assistant turn spans from the end of the text rendered up to it
     * (with the generation prompt) to the end of the text that includes it. */
    for (int m = 0; status == MR_OK && m < row->n_messages; m++) {
        if (strcmp(row->messages[m].role, "assistant") != 0) {
            continue;
        }
        int bounds[2] = {0, 0};
        for (int side = 0; side < 2 && status == MR_OK; side++) {
            char *part = NULL;
            int32_t *ids = NULL;
            int n_ids = 0;
            status = mr_chat_render(template_kind, row->messages, side == 0 ? m : m + 1,
                                    side == 0, &part, &len, err);
            if (status == MR_OK) {
                status = encode(t->tok, part, true, &ids, &n_ids, err);
            }
            free(part);
            bounds[side] = common_prefix(seq->tokens, seq->length, ids, n_ids);
            free(ids);
        }
        if (status == MR_OK) {
            learn_span(seq, bounds[0], bounds[1]);
        }
    }
    if (status != MR_OK) {
        free(seq->tokens);
        free(seq->targets);
        memset(seq, 0, sizeof *seq);
        char cause[MR_ERROR_MESSAGE_MAX];
        snprintf(cause, sizeof cause, "%s", err != NULL ? err->message : "");
        return mr_error_set(err, status, "%s:%d: %s", t->o.data_path, row->line, cause);
    }

    /* NOTE: a long conversation loses its end, which may cut an assistant
     * turn short; the prompt-side truncation of train_encode_pair() does
     * not apply to several turns. */
    if (seq->length > t->o.max_length) {
        seq->length = t->o.max_length;
        seq->targets[seq->length - 1] = -1;
    }
    return MR_OK;
}

/* Picks the chat template: the option, else the GGUF file's. */
static mr_status chat_template_of(trainer *t, mr_chat_template *out, mr_error *err) {
    if (t->o.chat_template != NULL) {
        return mr_chat_template_parse(t->o.chat_template, out, err);
    }
    if (t->gguf == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "train: chat rows need a chat template; set chat_template to "
                            "chatml, llama3 or llama2");
    }
    return mr_chat_template_from_gguf(t->gguf, out, err);
}

/* Tokenizes one row into ex. */
static mr_status tokenize_row(trainer *t, const train_row *row, mr_chat_template template_kind,
                              train_example *ex, mr_error *err) {
    memset(ex, 0, sizeof *ex);
    ex->line = row->line;
    ex->label = row->label;
    switch (t->o.kind) {
    case MR_TRAIN_SFT:
        ex->n_seq = 1;
        if (row->messages != NULL) {
            return encode_chat(t, template_kind, row, &ex->seq[0], err);
        }
        return train_encode_pair(t, row->prompt, row->completion, t->o.add_eos, &ex->seq[0], err);
    case MR_TRAIN_REWARD:
    case MR_TRAIN_DPO: {
        const char *sides[3] = {row->chosen, row->rejected, row->ground_truth};
        int n = row->ground_truth != NULL ? 3 : 2;
        for (int k = 0; k < n; k++) {
            mr_status status = train_encode_pair(t, row->prompt, sides[k], t->o.add_eos,
                                                 &ex->seq[k], err);
            ex->n_seq = k + 1;
            if (status != MR_OK) {
                return status;
            }
        }
        return MR_OK;
    }
    case MR_TRAIN_CLASSIFY: {
        ex->n_seq = 1;
        int32_t *ids = NULL;
        int n = 0;
        mr_status status = encode(t->tok, row->text, false, &ids, &n, err);
        if (status == MR_OK) {
            status = sequence_from_ids(ids, n, &ex->seq[0], err);
        }
        if (status != MR_OK) {
            free(ids);
            ex->seq[0].tokens = NULL;
            return status;
        }
        if (ex->seq[0].length > t->o.max_length) {
            ex->seq[0].length = t->o.max_length;
        }
        return MR_OK;
    }
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "train: unknown kind %d", (int)t->o.kind);
}

/* True when every sequence of ex has a token, and SFT and DPO sequences a
 * learnt one. */
static bool usable(const trainer *t, const train_example *ex) {
    for (int k = 0; k < ex->n_seq; k++) {
        const train_sequence *s = &ex->seq[k];
        if (s->length == 0) {
            return false;
        }
        if (t->o.kind == MR_TRAIN_SFT || t->o.kind == MR_TRAIN_DPO) {
            bool any = false;
            for (int i = 0; i < s->length && !any; i++) {
                any = s->targets[i] >= 0;
            }
            if (!any) {
                return false;
            }
        }
    }
    return true;
}

mr_status train_tokenize(trainer *t, const train_row *rows, int n_rows,
                         train_example **examples_out, int *n_out, mr_error *err) {
    *examples_out = NULL;
    *n_out = 0;
    mr_chat_template template_kind = MR_CHAT_CHATML;
    bool any_chat = false;
    for (int i = 0; i < n_rows; i++) {
        any_chat = any_chat || rows[i].messages != NULL;
    }
    if (any_chat) {
        mr_status status = chat_template_of(t, &template_kind, err);
        if (status != MR_OK) {
            return status;
        }
    }

    train_example *examples = calloc((size_t)(n_rows > 0 ? n_rows : 1), sizeof *examples);
    if (examples == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "train: out of memory for %d examples",
                            n_rows);
    }
    int n = 0, dropped = 0;
    for (int i = 0; i < n_rows; i++) {
        mr_status status = tokenize_row(t, &rows[i], template_kind, &examples[n], err);
        if (status != MR_OK) {
            train_examples_free(examples, n + 1);
            return status;
        }
        if (usable(t, &examples[n])) {
            n++;
        } else {
            for (int k = 0; k < examples[n].n_seq; k++) {
                free(examples[n].seq[k].tokens);
                free(examples[n].seq[k].targets);
            }
            memset(&examples[n], 0, sizeof examples[n]);
            dropped++;
        }
    }
    if (dropped > 0) {
        mr_log(MR_LOG_WARN, "train",
               "dropped %d rows whose tokens leave nothing to learn within max_length %d",
               dropped, t->o.max_length);
    }
    *examples_out = examples;
    *n_out = n;
    return MR_OK;
}
