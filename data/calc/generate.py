"""Writes the calculator task's problem sets and SFT transcripts.

    python3 data/calc/generate.py [--seed 1] [--train 2000] [--eval 200] [--valid 200]

writes, next to this script:
  train.jsonl  {"question": "37*24+58", "answer": 946}, problems for RL
  eval.jsonl   held-out test problems: no question appears in train.jsonl
  valid.jsonl  validation problems for choosing training settings, which
               keeps eval.jsonl a test set. No question appears in
               train.jsonl or eval.jsonl
  sft.jsonl    {"prompt": "Q: 37*24+58\\n", "completion": " <calc>..."},
               one correct transcript per train problem

Each question joins two or three integers from 1 to 99 with +, - or *.
Intermediate values never go below zero, because the calculator reads
only non-negative numbers. A transcript makes one calculator call per
operator, products first and then left to right, as mr_calc_transcript()
in src/train/env_calc.c writes it, and joins the turns and results with
single spaces.

The validation problems are drawn after all the others from the same
generator, so train.jsonl, eval.jsonl and sft.jsonl do not depend on
--valid.
"""
import argparse
import json
import os
import random


def reduce_steps(numbers, ops):
    """Returns the (a, op, b, value) steps in calculator order, or None
    when a step goes below zero."""
    numbers, ops, steps = list(numbers), list(ops), []
    while ops:
        at = ops.index("*") if "*" in ops else 0
        a, op, b = numbers[at], ops[at], numbers[at + 1]
        if op == "*":
            value = a * b
        elif op == "+":
            value = a + b
        else:
            value = a - b
        if value < 0:
            return None
        steps.append((a, op, b, value))
        numbers[at:at + 2] = [value]
        del ops[at]
    return steps


def make_problem(rng):
    """Draws one problem and its calculator steps."""
    while True:
        count = rng.choice([2, 3])
        numbers = [rng.randint(1, 99) for _ in range(count)]
        ops = [rng.choice("+-*") for _ in range(count - 1)]
        steps = reduce_steps(numbers, ops)
        if steps is not None:
            question = "".join(f"{n}{o}" for n, o in zip(numbers, ops)) + str(numbers[-1])
            return question, steps


def transcript(steps):
    """The completion text: calls and results, then the answer."""
    parts = []
    for a, op, b, value in steps:
        parts.append(f"<calc>{a}{op}{b}</calc>")
        parts.append(f"<result>{value}</result>")
    parts.append(f"<answer>{steps[-1][3]}</answer>")
    return " " + " ".join(parts)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(", ", ": ")) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--valid", type=int, default=200)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    seen, problems = set(), []
    while len(problems) < args.train + args.eval + args.valid:
        question, steps = make_problem(rng)
        if question not in seen:
            seen.add(question)
            problems.append((question, steps))
    held_out_end = args.train + args.eval
    train = problems[:args.train]
    held_out = problems[args.train:held_out_end]
    valid = problems[held_out_end:]

    here = os.path.dirname(os.path.abspath(__file__))
    write_jsonl(os.path.join(here, "train.jsonl"),
                [{"question": q, "answer": s[-1][3]} for q, s in train])
    write_jsonl(os.path.join(here, "eval.jsonl"),
                [{"question": q, "answer": s[-1][3]} for q, s in held_out])
    write_jsonl(os.path.join(here, "valid.jsonl"),
                [{"question": q, "answer": s[-1][3]} for q, s in valid])
    write_jsonl(os.path.join(here, "sft.jsonl"),
                [{"prompt": f"Q: {q}\n", "completion": transcript(s)} for q, s in train])


if __name__ == "__main__":
    main()
