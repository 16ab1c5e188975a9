/*
 * multiround trainers for Llama-family models: supervised fine-tuning
 * (SFT), reward models, sequence classifiers and direct preference
 * optimisation (DPO), with the options they share.
 *
 * Every trainer loads a model (GGUF file, Hugging Face folder, or a random
 * model of a given config), trains all of its weights or a LoRA adapter
 * with AdamW, and writes a run folder:
 *
 *   OUT/config.json        every option, defaults included
 *   OUT/metrics.jsonl      one line per logged step (runlog.h)
 *   OUT/checkpoint.json    names the latest complete checkpoint
 *   OUT/checkpoints/step-NNNNNNNN/   weights, optimizer state, data position
 *   OUT/model.gguf or OUT/model/     the fully fine-tuned model
 *   OUT/adapter/           the LoRA adapter as a PEFT folder
 *   OUT/head.safetensors   the reward or classifier head
 *   OUT/done               written last
 *
 * A run started again with resume set continues from the latest
 * checkpoint and ends with the same weights, bit for bit, as a run that
 * was never stopped (same seed and thread count).
 *
 *     mr_train_options o;
 *     mr_train_options_default(&o, MR_TRAIN_SFT);
 *     o.model_path = "stories260K.gguf";
 *     o.data_path = "sft.jsonl";
 *     o.out_dir = "runs/sft";
 *     mr_train_result result;
 *     mr_train_run(&o, &result, &err);
 */
#ifndef MULTIROUND_TRAIN_H
#define MULTIROUND_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/llama.h"
#include "multiround/lora.h"
#include "multiround/optim.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a run trains, and the rows its JSON Lines data holds. */
typedef enum mr_train_kind {
    MR_TRAIN_SFT = 0,      /* {"prompt","completion"} or {"messages":[...]} */
    MR_TRAIN_REWARD = 1,   /* {"prompt","chosen","rejected"} */
    MR_TRAIN_CLASSIFY = 2, /* {"text","label"} with label in [0, num_labels) */
    MR_TRAIN_DPO = 3       /* {"prompt","chosen","rejected"}, optional "ground_truth" */
} mr_train_kind;

/* Returns "sft", "rm", "classify" or "dpo" (NULL for an unknown kind). */
const char *mr_train_kind_name(mr_train_kind kind);

/* Where DPO takes its reference log-probabilities from. */
typedef enum mr_dpo_reference {
    MR_DPO_REFERENCE_COPY = 0,       /* a frozen copy of the starting model */
    MR_DPO_REFERENCE_ADAPTER_OFF = 1 /* the policy with its LoRA adapter switched off */
} mr_dpo_reference;

/* Every setting of a run. Strings are borrowed for the duration of the call. */
typedef struct mr_train_options {
    mr_train_kind kind;

    /* Model. model_path is a GGUF file or a Hugging Face folder; NULL
     * builds a random model of init_config from seed. */
    const char *model_path;
    mr_llama_config init_config;
    const char *tokenizer_path; /* GGUF file or tokenizer.json; NULL: the model's own */

    /* Data. Without eval_path, rows whose 0-based index i has
     * i % eval_every_nth == eval_every_nth - 1 are held out (0: none). */
    const char *data_path;
    const char *eval_path;
    int eval_every_nth;
    int max_length;     /* tokens per sequence; longer ones are truncated */
    int eval_max_examples; /* held-out examples evaluated at most (0: all) */

    const char *out_dir;
    uint64_t seed;

    /* Optimisation: one step is grad_accum micro-batches of batch_size
     * examples, then a clipped AdamW update. */
    int64_t max_steps;
    int batch_size;
    int grad_accum;
    float lr;
    float min_lr;          /* end of the cosine decay */
    int64_t warmup_steps;  /* linear warm-up; -1: min(10, max_steps), or on resume
                              the value in OUT/config.json */
    mr_lr_decay decay;     /* MR_LR_COSINE or MR_LR_CONSTANT */
    float weight_decay;    /* applied to matrices only, not to norms or biases */
    double adam_beta1, adam_beta2;
    float adam_eps;
    float clip_norm;       /* maximum gradient norm; <= 0 disables clipping */

    /* LoRA instead of full fine-tuning. */
    bool lora;
    mr_lora_config lora_config;

    /* Bookkeeping, in steps (0 disables). stop_after ends the run after
     * that step as if it were killed: no final outputs and no done marker. */
    int64_t log_every;
    int64_t eval_every;
    int64_t checkpoint_every;
    int64_t stop_after;
    bool resume;           /* continue from OUT/checkpoint.json when it exists */

    /* Called after every step but the last. When it returns true the run
     * writes a checkpoint and returns MR_ERR_INTERRUPTED; a resume then
     * continues from that step. NULL: never. */
    bool (*stop)(void *user_data);
    void *stop_user_data;

    /* SFT. */
    bool pack;             /* join short examples into sequences of max_length */
    const char *chat_template; /* "chatml", "llama3" or "llama2"; NULL: from the GGUF */
    bool add_eos;          /* append EOS to each completion */
    const char *completion_field; /* field learnt as the completion of prompt rows;
                                     NULL: "completion" */

    /* Classifier. */
    int num_labels;

    /* DPO. */
    float dpo_beta;
    mr_dpo_reference reference;
    float sft_weight;      /* weight of the NLL of the ground truth (or chosen) completion */
} mr_train_options;

/*
 * Fills o with the defaults of kind. Optimisation: batch 8, accumulation
 * 1, 100 steps, max_length 256, AdamW lr 1e-4 (5e-6 for DPO), warm-up
 * steps -1 (10, or max_steps when that is smaller), cosine decay to 0, weight decay 0.01, betas 0.9 and 0.999, eps
 * 1e-8 and clipping at 1. Bookkeeping: a log line every step, evaluation
 * and a checkpoint every 50 steps, seed 1, no held-out split. LoRA is off
 * (rank 8, alpha 16, dropout 0, targets q and v when switched on). SFT
 * does not pack and appends EOS. Classifiers get 2 labels. DPO uses beta
 * 0.1, a frozen copy as reference and sft_weight 0.
 */
void mr_train_options_default(mr_train_options *o, mr_train_kind kind);

/* Figures of a finished (or stopped) run. Values are NaN where the run
 * has none. */
typedef struct mr_train_result {
    int64_t steps;            /* optimizer steps completed */
    double last_loss;         /* training loss of the last step */
    double eval_loss_start;   /* held-out loss before the first step */
    double eval_loss;         /* held-out loss after the last step */
    double eval_accuracy_start; /* held-out accuracy before the first step */
    double eval_accuracy;     /* held-out accuracy after the last step (RM,
                                 classifier, DPO implicit reward) */
} mr_train_result;

/*
 * Runs the training that o describes and fills result (may be NULL).
 * Fails with MR_ERR_INVALID_ARGUMENT on an invalid option, checked before
 * any file is read, and then also names the first malformed data row if
 * there is one. A malformed data row alone gives MR_ERR_FORMAT naming the
 * file and line. A loss or gradient norm that is not finite gives
 * MR_ERR_NUMERIC naming the step and the data lines. Loading and writing
 * errors pass through.
 *
 * Without resume, an out_dir that contains a finished run (OUT/done) or a
 * checkpoint (OUT/checkpoint.json) gives MR_ERR_STATE and is left as it
 * is. With resume and a checkpoint, every setting that changes the result
 * must equal the one in OUT/config.json (MR_ERR_STATE naming the keys that
 * differ). Only max_steps may grow, and log_every, eval_every,
 * checkpoint_every and stop_after may change. When the run fails before
 * its first checkpoint, the out_dir folders it created are removed.
 */
mr_status mr_train_run(const mr_train_options *o, mr_train_result *result, mr_error *err);

/* mr_train_run() with o->kind set to SFT, reward model, classifier or
 * DPO respectively; o itself is not changed. */
mr_status mr_train_sft(const mr_train_options *o, mr_train_result *result, mr_error *err);
mr_status mr_train_reward(const mr_train_options *o, mr_train_result *result, mr_error *err);
mr_status mr_train_classifier(const mr_train_options *o, mr_train_result *result,
                              mr_error *err);
mr_status mr_train_dpo(const mr_train_options *o, mr_train_result *result, mr_error *err);

/* ------------------------------------------------------------------------
 * Losses, for the trainers above and for tests
 * ------------------------------------------------------------------------ */

/*
 * Returns [B]: for each row of tokens (I32 [B, T]) the sum of
 * log p(targets[b][t] | tokens[b][0..t]) over the positions whose target
 * (I32 [B, T]) is not -1, through the LoRA adapter when lora is not NULL.
 */
mr_tensor *mr_train_sequence_logps(mr_llama *model, mr_lora *lora, mr_ctx *ctx,
                                   mr_tensor *tokens, mr_tensor *targets);

/* Per-batch diagnostics of the DPO loss, as means over the pairs. */
typedef struct mr_dpo_stats {
    double loss;
    double reward_chosen;   /* beta (log pi(chosen) - log ref(chosen)) */
    double reward_rejected;
    double margin;          /* reward_chosen - reward_rejected */
    double accuracy;        /* fraction of pairs with reward_chosen > reward_rejected */
    double logp_chosen;     /* policy log-probabilities */
    double logp_rejected;
} mr_dpo_stats;

/*
 * The sigmoid DPO loss, mean over N pairs of
 * -log sigmoid(beta ((pc - pr) - (rc - rr))), where pc and pr are the
 * policy log-probabilities (F32 [N], recorded) and rc, rr the reference
 * ones (F32 [N], constants). Fills stats when it is not NULL.
 */
mr_tensor *mr_train_dpo_loss(mr_ctx *ctx, mr_tensor *policy_chosen, mr_tensor *policy_rejected,
                             mr_tensor *reference_chosen, mr_tensor *reference_rejected,
                             float beta, mr_dpo_stats *stats);

/*
 * Returns the head outputs [B, K] of a Linear layer (weight [K, C], bias
 * [K] or NULL) on the final hidden state of each row's token at last[b]
 * (I32 [B]), usually the last token that is not padding.
 */
mr_tensor *mr_train_head_outputs(mr_llama *model, mr_lora *lora, mr_ctx *ctx,
                                 mr_tensor *tokens, mr_tensor *last, mr_tensor *weight,
                                 mr_tensor *bias);

/* The Bradley-Terry loss: the mean over pairs of
 * -log sigmoid(r_chosen - r_rejected), for scores F32 [N]. */
mr_tensor *mr_train_bradley_terry_loss(mr_ctx *ctx, mr_tensor *r_chosen, mr_tensor *r_rejected);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_TRAIN_H */
