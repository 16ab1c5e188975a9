/*
 * Tests of supervised fine-tuning: the loss and gradients against
 * PyTorch (tests/fixtures/torch_trainers.py), the JSON Lines reader's
 * errors, the completion and chat masks on the stories260K tokenizer, and
 * short runs (full, LoRA, packed) that must lower the held-out loss.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/train.h"
#include "train_fixture.h"

#define STORIES "data/lm/stories260K.gguf"

/* Writes text to a new file under /tmp and returns its path (static). */
static const char *write_temp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mr_test_sft_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loss and gradients are PyTorch's within float32 rounding of a
 * two-layer model: sums over up to 29 logits and 7 positions. */
static void sft_loss_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load(TRAINERS_FIXTURE);
    mr_ctx *data = mr_ctx_create(0), *ctx = mr_ctx_create(0);
    trainer t;
    memset(&t, 0, sizeof t);
    mr_train_options_default(&t.o, MR_TRAIN_SFT);
    t.model = fixture_model(fixture, data, "sft", "");
    train_batch b;
    fixture_batch(fixture, data, "sft", 2, &b);
    train_metrics m = {0};

    mr_tensor *loss = sft_batch_loss(&t, ctx, &b, &m);
    CHECK_CTX_OK(ctx);
    mr_tensor *expected = mr_fixture_tensor(fixture, data, "sft", "loss");
    CHECK(loss != NULL && expected != NULL);
    if (loss != NULL && expected != NULL) {
        CHECK_NEAR(loss->data[0], expected->data[0], 1e-5);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        static const char *const weights[] = {"token_embd.weight", "blk.1.attn_q.weight",
                                              "output.weight"};
        check_fixture_grads(fixture, data, "sft", mr_llama_params(t.model), weights, 3, 1e-5,
                            1e-3);
    }

    mr_llama_free(t.model);
    mr_ctx_free(ctx);
    mr_ctx_free(data);
    mr_fixture_free(fixture);
}

/* A bad row is reported with its file and line. */
static void jsonl_errors_name_line(void) {
    const char *path = write_temp("bad.jsonl",
                                  "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                  "\n"
                                  "{\"prompt\": \"a\"}\n");
    train_row *rows = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_SFT, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":3: missing string field \"completion\"") != NULL);

    path = write_temp("notjson.jsonl", "{\"text\": \"x\", \"label\": 1}\n[1, 2]\n");
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_CLASSIFY, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":2: not a JSON object") != NULL);

    path = write_temp("label.jsonl", "{\"text\": \"x\", \"label\": 5}\n");
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_CLASSIFY, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":1: label 5 is outside [0, 2)") != NULL);
    unlink(path);
}

/* Text that is not JSON is reported with its line and column, and a cut
 * line with a hint, not as "not a JSON object". */
static void jsonl_invalid_json_names_column(void) {
    const char *path = write_temp("cut.jsonl",
                                  "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                  "{\"prompt\": \"a\", \"compl\n");
    train_row *rows = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_SFT, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":2:") != NULL);
    CHECK(strstr(err.message, "invalid JSON") != NULL);
    CHECK(strstr(err.message, "the row may be cut short") != NULL);
    CHECK(strstr(err.message, "not a JSON object") == NULL);

    path = write_temp("token.jsonl", "{\"prompt\": \"a\", \"completion\": nope}\n");
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_SFT, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":1:31: invalid JSON near 'nope}'") != NULL);
    CHECK(strstr(err.message, "cut short") == NULL);

    path = write_temp("trailing.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"} x\n");
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_SFT, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":1:36: invalid JSON near 'x'") != NULL);
    unlink(path);
}

/* completion_field names the field that SFT learns, such as the chosen
 * side of preference pairs. */
static void jsonl_reads_completion_field(void) {
    const char *path = write_temp("chosen.jsonl",
                                  "{\"prompt\": \"p\", \"chosen\": \" c\", \"rejected\": \"r\"}\n");
    train_row *rows = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(train_read_rows(path, MR_TRAIN_SFT, 2, "chosen", &rows, &n, &err), MR_OK);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        CHECK(strcmp(rows[0].prompt, "p") == 0);
        CHECK(strcmp(rows[0].completion, " c") == 0);
    }
    train_rows_free(rows, n);

    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_SFT, 2, &rows, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":1: missing string field \"completion\"") != NULL);
    unlink(path);
}

/* Preference rows with an empty side are dropped; the others keep their
 * line numbers. */
static void jsonl_skips_empty_sides(void) {
    const char *path = write_temp("pairs.jsonl",
                                  "{\"prompt\": \"p\", \"chosen\": \"\", \"rejected\": \"r\"}\n"
                                  "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n");
    train_row *rows = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(train_read_jsonl(path, MR_TRAIN_DPO, 2, &rows, &n, &err), MR_OK);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        CHECK_INT_EQ(rows[0].line, 2);
        CHECK(strcmp(rows[0].chosen, "c") == 0);
        CHECK(rows[0].ground_truth == NULL);
    }
    train_rows_free(rows, n);
    unlink(path);
}

/* A trainer with only the stories260K tokenizer, for encoding tests. */
static void open_stories_tokenizer(trainer *t) {
    memset(t, 0, sizeof *t);
    mr_train_options_default(&t->o, MR_TRAIN_SFT);
    mr_error err;
    CHECK_STATUS(mr_gguf_open(STORIES, &t->gguf, &err), MR_OK);
    CHECK_STATUS(mr_tokenizer_from_gguf(t->gguf, &t->tok, &err), MR_OK);
}

/* Counts targets that are not -1. */
static int learnt(const train_sequence *s) {
    int n = 0;
    for (int i = 0; i < s->length; i++) {
        n += s->targets[i] >= 0;
    }
    return n;
}

/* Only the completion's tokens and EOS are learnt, each predicted by the
 * position before it. */
static void encode_pair_masks_completion(void) {
    trainer t;
    open_stories_tokenizer(&t);
    train_sequence seq;
    mr_error err;
    CHECK_STATUS(train_encode_pair(&t, "Once upon a time", " there was a cat.", true, &seq, &err),
                 MR_OK);

    int64_t n_prompt = 0;
    const char *prompt = "Once upon a time";
    mr_tokenizer_encode(t.tok, prompt, strlen(prompt), true, false, NULL, 0, &n_prompt, NULL);
    CHECK(n_prompt > 1);
    CHECK(seq.length > n_prompt);
    CHECK_INT_EQ(seq.tokens[0], mr_tokenizer_bos(t.tok));
    CHECK_INT_EQ(seq.tokens[seq.length - 1], mr_tokenizer_eos(t.tok));
    CHECK_INT_EQ(learnt(&seq), seq.length - n_prompt);
    for (int i = 0; i < seq.length; i++) {
        int32_t expected = i >= n_prompt - 1 && i < seq.length - 1 ? seq.tokens[i + 1] : -1;
        CHECK_INT_EQ(seq.targets[i], expected);
    }
    free(seq.tokens);
    free(seq.targets);

    /* Truncation drops prompt tokens after BOS first, so the whole
     * completion stays learnt. */
    t.o.max_length = seq.length - 2;
    CHECK_STATUS(train_encode_pair(&t, "Once upon a time", " there was a cat.", true, &seq, &err),
                 MR_OK);
    CHECK_INT_EQ(seq.length, t.o.max_length);
    CHECK_INT_EQ(seq.tokens[0], mr_tokenizer_bos(t.tok));
    CHECK_INT_EQ(learnt(&seq), t.o.max_length - (n_prompt - 2));
    free(seq.tokens);
    free(seq.targets);

    mr_tokenizer_free(t.tok);
    mr_gguf_close(t.gguf);
}

/* Decodes the learnt targets of seq into out. */
static void decode_learnt(const trainer *t, const train_sequence *seq, char *out, size_t cap) {
    int32_t ids[512];
    int n = 0;
    for (int i = 0; i < seq->length && n < 512; i++) {
        if (seq->targets[i] >= 0) {
            ids[n++] = seq->targets[i];
        }
    }
    size_t len = 0;
    mr_tokenizer_decode(t->tok, ids, n, false, true, out, cap - 1, &len, NULL);
    out[len < cap - 1 ? len : cap - 1] = '\0';
}

/* In a chat row only the assistant turns are learnt. */
static void chat_masks_assistant_turns(void) {
    trainer t;
    open_stories_tokenizer(&t);
    t.o.chat_template = "chatml";
    t.o.data_path = "chat.jsonl";
    mr_chat_message messages[] = {{"user", "Tom had a dog."},
                                  {"assistant", "The dog was big."},
                                  {"user", "What color?"},
                                  {"assistant", "It was red."}};
    train_row row = {.line = 1, .messages = messages, .n_messages = 4};
    train_example *examples = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(train_tokenize(&t, &row, 1, &examples, &n, &err), MR_OK);
    CHECK_INT_EQ(n, 1);
    if (n == 1) {
        char text[2048];
        decode_learnt(&t, &examples[0].seq[0], text, sizeof text);
        CHECK(strstr(text, "The dog was big.") != NULL);
        CHECK(strstr(text, "It was red.") != NULL);
        CHECK(strstr(text, "<|im_end|>") != NULL);
        CHECK(strstr(text, "Tom had") == NULL);
        CHECK(strstr(text, "What color") == NULL);
        CHECK(strstr(text, "user") == NULL);
    }
    train_examples_free(examples, n);
    mr_tokenizer_free(t.tok);
    mr_gguf_close(t.gguf);
}

/* Writes a small SFT set: 24 short story completions. */
static const char *write_sft_data(void) {
    static const char *const subjects[] = {"The cat", "A little dog", "Lily", "Tom",
                                           "The bird", "Ben", "The sun", "A big fish"};
    static const char *const endings[] = {" was happy.", " liked to play.", " went home."};
    char *text = malloc(8192);
    size_t used = 0;
    for (int i = 0; i < 24; i++) {
        used += (size_t)snprintf(text + used, 8192 - used,
                                 "{\"prompt\": \"Once upon a time, %s\", \"completion\": \"%s\"}\n",
                                 subjects[i % 8], endings[i % 3]);
    }
    const char *path = write_temp("sft.jsonl", text);
    free(text);
    return path;
}

/* Runs SFT on stories260K in out and returns the result. */
static mr_train_result run_sft(const char *data, const char *out, bool lora, bool pack) {
    mr_train_options o;
    mr_train_options_default(&o, MR_TRAIN_SFT);
    o.model_path = STORIES;
    o.data_path = data;
    o.out_dir = out;
    o.eval_every_nth = 4;
    o.max_steps = 12;
    o.batch_size = 4;
    o.grad_accum = 2;
    o.lr = lora ? 1e-2f : 2e-3f;
    o.warmup_steps = 2;
    o.checkpoint_every = 0;
    o.eval_every = 0;
    o.lora = lora;
    o.lora_config.targets = MR_LORA_ALL;
    o.pack = pack;
    o.max_length = 64;
    mr_train_result result;
    mr_error err;
    mr_status status = mr_train_run(&o, &result, &err);
    CHECK_STATUS(status, MR_OK);
    if (status != MR_OK) {
        fprintf(stderr, "%s\n", err.message);
    }
    return result;
}

/* True when dir/name exists. */
static bool exists_in(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* Full, LoRA and packed SFT each lower the held-out completion loss and
 * write their outputs. */
static void sft_runs_lower_eval_loss(void) {
    const char *data = write_sft_data();
    char data_copy[256], out[256];
    snprintf(data_copy, sizeof data_copy, "%s", data);
    static const struct {
        const char *name;
        bool lora, pack;
        const char *output;
    } runs[] = {{"full", false, false, "model.gguf"},
                {"lora", true, false, "adapter/adapter_model.safetensors"},
                {"packed", false, true, "model.gguf"}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        snprintf(out, sizeof out, "/tmp/mr_test_sft_%d_run_%s", (int)getpid(), runs[i].name);
        mr_train_result r = run_sft(data_copy, out, runs[i].lora, runs[i].pack);
        CHECK_INT_EQ(r.steps, 12);
        CHECK(isfinite(r.eval_loss_start));
        CHECK(r.eval_loss < r.eval_loss_start - 0.1);
        CHECK(exists_in(out, runs[i].output));
        CHECK(exists_in(out, "done"));
        CHECK(exists_in(out, "config.json"));
        CHECK(exists_in(out, "metrics.jsonl"));
        char command[600];
        snprintf(command, sizeof command, "rm -rf '%s'", out);
        CHECK_INT_EQ(system(command), 0);
    }
    unlink(data_copy);
}

int main(void) {
    mr_log_set_level(MR_LOG_WARN);
    MR_RUN(sft_loss_matches_torch);
    MR_RUN(jsonl_errors_name_line);
    MR_RUN(jsonl_invalid_json_names_column);
    MR_RUN(jsonl_reads_completion_field);
    MR_RUN(jsonl_skips_empty_sides);
    MR_RUN(encode_pair_masks_completion);
    MR_RUN(chat_masks_assistant_turns);
    MR_RUN(sft_runs_lower_eval_loss);
    return mr_test_finish();
}
