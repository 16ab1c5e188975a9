/*
 * multiround environments for multi-turn reinforcement learning of a
 * language model, and the calculator task that multiround ships.
 *
 * An episode runs as follows. reset() gives the prompt text. The policy
 * then writes one turn, which ends at one of the environment's stop
 * strings, an end-of-generation token or the turn's token budget. step()
 * reads that turn and either returns text to insert (a tool result, say)
 * or ends the episode with a scalar reward. Inserted text is tokenized and
 * appended to the sequence, but the policy did not produce it, so the
 * trainers leave its tokens out of the policy loss and the KL term. The
 * rollout code (rl.h) stops an episode that runs out of turns or tokens
 * and scores it with truncated_reward().
 *
 *     mr_env *env = mr_env_calc_create(problems, n, &calc_config, &err);
 *     char *prompt = NULL;
 *     mr_env_reset(env, episode, &prompt, &err);
 *     ... the policy writes turn ...
 *     mr_env_reply reply;
 *     mr_env_step(env, turn, strlen(turn), &reply, &err);
 *     if (reply.done) { ... reply.reward ... } else { ... insert reply.text ... }
 *     mr_env_reply_clear(&reply);
 *     mr_env_free(env);
 *
 * An environment keeps the state of one episode at a time, so rollouts
 * that run in parallel need one environment each.
 */
#ifndef MULTIROUND_ENV_H
#define MULTIROUND_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The environment's reply to one policy turn. */
typedef struct mr_env_reply {
    bool done;    /* the episode is over: reward is set and text is NULL */
    float reward; /* the episode's reward when done, else 0 */
    char *text;   /* NUL-terminated text to insert when not done (malloc'd) */
} mr_env_reply;

/* Frees the reply's text and zeroes it. reply may be NULL. */
void mr_env_reply_clear(mr_env_reply *reply);

/* The callbacks of an environment; state is the pointer given at creation. */
typedef struct mr_env_ops {
    const char *name;
    /* Starts episode `episode` and stores its prompt text (malloc'd) in
     * *prompt. The same episode number gives the same prompt. */
    mr_status (*reset)(void *state, uint64_t episode, char **prompt, mr_error *err);
    /* Reads the policy's turn (len bytes, stop string included) and fills
     * reply. */
    mr_status (*step)(void *state, const char *turn, size_t len, mr_env_reply *reply,
                      mr_error *err);
    /* The reward of an episode that the budgets stopped before step()
     * ended it. */
    float (*truncated_reward)(void *state);
    /* Frees state; may be NULL. */
    void (*free_state)(void *state);
} mr_env_ops;

/* Budgets of one episode. */
typedef struct mr_env_limits {
    int max_turns;       /* policy turns, >= 1 */
    int max_turn_tokens; /* tokens the policy may write in one turn, >= 1 */
    int max_tokens;      /* tokens of the whole sequence: prompt, turns and
                            inserted text, >= 2 */
} mr_env_limits;

typedef struct mr_env mr_env;

/*
 * Creates an environment from its callbacks and state, which it owns from
 * then on (ops->free_state runs in mr_env_free, and also here on failure).
 * stop contains n_stop non-empty strings that end a policy turn; they are
 * copied. Returns NULL and fills err when ops lacks reset, step or
 * truncated_reward, a stop string is empty, or a limit is out of range.
 */
mr_env *mr_env_create(const mr_env_ops *ops, void *state, const char *const *stop, int n_stop,
                      const mr_env_limits *limits, mr_error *err);

/* Frees the environment and its state. env may be NULL. */
void mr_env_free(mr_env *env);

/* Starts an episode; see mr_env_ops.reset. */
mr_status mr_env_reset(mr_env *env, uint64_t episode, char **prompt, mr_error *err);

/* Passes one policy turn to the environment; see mr_env_ops.step. reply is
 * zeroed first, and cleared again when the callback fails. */
mr_status mr_env_step(mr_env *env, const char *turn, size_t len, mr_env_reply *reply,
                      mr_error *err);

/* The reward of an episode stopped by the budgets. */
float mr_env_truncated_reward(mr_env *env);

/* The stop strings; *n receives their count. */
const char *const *mr_env_stop_strings(const mr_env *env, int *n);

const mr_env_limits *mr_env_get_limits(const mr_env *env);
const char *mr_env_name(const mr_env *env);

/* ------------------------------------------------------------------------
 * The calculator task
 *
 * The prompt states an arithmetic problem on non-negative integers with
 * +, - and * (such as "Q: 37*24+58\n"). In each turn the policy may call
 * the calculator by writing <calc>EXPRESSION</calc>; the environment
 * inserts <result>VALUE</result>, or <result>error</result> for an
 * expression it cannot evaluate. The episode ends at the first turn that
 * contains <answer>N</answer> (reward 1 when N equals the problem's value,
 * else 0), or at a turn with neither tag. Turns end at the stop strings
 * "</calc>" and "</answer>". Each format error (a calc call that does not
 * evaluate, an answer that is not an integer, a turn without a tag, an
 * episode stopped by the budgets) subtracts format_penalty from the
 * reward.
 * ------------------------------------------------------------------------ */

/* Maximum length of a problem's question, in bytes, NUL included. */
#define MR_CALC_QUESTION_MAX 64

/* One problem: the expression to compute and its value. */
typedef struct mr_calc_problem {
    char question[MR_CALC_QUESTION_MAX];
    int64_t answer;
} mr_calc_problem;

typedef struct mr_calc_config {
    float format_penalty; /* subtracted per format error, >= 0 */
    mr_env_limits limits;
} mr_calc_config;

/* Returns the defaults: format penalty 0.1, 4 turns of at most 32
 * tokens, 256 tokens per episode. */
mr_calc_config mr_calc_config_default(void);

/*
 * Evaluates an expression of non-negative decimal integers, +, -, *,
 * parentheses and spaces, with the usual precedence, in 64-bit integers.
 * Returns MR_ERR_INVALID_ARGUMENT naming the offset of a syntax error,
 * and MR_ERR_NUMERIC on overflow. Nesting is limited to 32 levels.
 */
mr_status mr_calc_eval(const char *expr, size_t len, int64_t *value, mr_error *err);

/*
 * Reads a problem file: JSON lines {"question": "37*24+58", "answer":
 * 946}. Each answer must equal mr_calc_eval(question); a line that does
 * not parse, a question that does not fit MR_CALC_QUESTION_MAX, or a wrong
 * answer gives MR_ERR_FORMAT naming the path and line. Stores a malloc'd
 * array in *problems and its length in *n (at least 1).
 */
mr_status mr_calc_problems_load(const char *path, mr_calc_problem **problems, int *n,
                                mr_error *err);

/* Creates the calculator environment over n problems (copied). Episode e
 * poses problem e mod n. */
mr_env *mr_env_calc_create(const mr_calc_problem *problems, int n, const mr_calc_config *config,
                           mr_error *err);

/* The prompt of a problem: "Q: " question "\n" (malloc'd). */
char *mr_calc_prompt(const mr_calc_problem *problem);

/*
 * Writes a correct transcript of problem as alternating segments: the
 * policy's turns (even indices 0, 2, ...) and the environment's replies
 * (odd indices), without the prompt. Each operator of the question gets
 * one calculator call in evaluation order (products first, then left to
 * right), and the last turn gives the answer. *segments receives a
 * malloc'd array of malloc'd strings (free with mr_calc_transcript_free).
 */
mr_status mr_calc_transcript(const mr_calc_problem *problem, char ***segments, int *n,
                             mr_error *err);
void mr_calc_transcript_free(char **segments, int n);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_ENV_H */
