#!/bin/sh
# The calculator task end to end, from the repository root after a
# Release build in build/: SFT of a random model on correct transcripts,
# then GRPO and, separately, PPO from the SFT model, then the plots.
# One thread per run: these models are so small that a second OpenMP
# thread costs more in synchronisation than it saves.
set -e
MR=${MR:-build/multiround}

$MR --threads 1 train sft --config examples/train/calc_sft.json

$MR --threads 1 train grpo --model runs/calc-sft/model.gguf \
    --train data/calc/train.jsonl --eval data/calc/eval.jsonl --eval-episodes 200 \
    --out runs/calc-grpo --steps 60 --prompts 16 --group 8 --minibatch 32 \
    --lr 5e-5 --temperature 0.7 --seed 1 --eval-every 20

$MR --threads 1 train ppo --model runs/calc-sft/model.gguf \
    --train data/calc/train.jsonl --eval data/calc/eval.jsonl --eval-episodes 200 \
    --out runs/calc-ppo --steps 60 --prompts 128 --group 1 --minibatch 32 \
    --lr 5e-5 --vf-coef 0.1 --temperature 0.7 --seed 1 --eval-every 20

$MR plot runs/calc-grpo runs/calc-ppo -o docs/figures/calc_rl.svg \
    --metrics eval/success,success,kl,clip_frac --width 800
$MR plot runs/calc-sft -o docs/figures/calc_sft.svg --metrics loss
