#!/bin/sh
# The calculator task end to end, from the repository root after a
# Release build in build/: SFT of a random model on correct transcripts
# for 550 steps (the start of RL), then GRPO and, separately, PPO from
# that model, then the plots. Two longer SFT runs (800 and 1600 steps)
# are the control: what more SFT gives without RL. A GRPO run of one
# step at lr 0 only evaluates a model, because every RL run evaluates
# its starting model at step 0 and lr 0 leaves the weights as they are.
# One thread per run: these models are so small that a second OpenMP
# thread costs more in synchronisation than it saves. Each run
# checkpoints, so a killed run continues where it stopped when its line
# is run again with --resume added.
set -e
MR=${MR:-build/multiround}

$MR --threads 1 train sft --config examples/train/calc_sft_short.json
$MR --threads 1 train grpo --config examples/train/calc_grpo.json
$MR --threads 1 train ppo --config examples/train/calc_ppo.json

$MR --threads 1 train sft --config examples/train/calc_sft.json
$MR --threads 1 train sft --config examples/train/calc_sft_long.json
for run in calc-sft calc-sft-long; do
    $MR --threads 1 train grpo --config examples/train/calc_grpo.json \
        --model runs/$run/model.gguf --out runs/$run-eval --steps 1 --lr 0 \
        --filter-groups off --prompts 1 --group 2 --minibatch 2
done

$MR plot runs/calc-grpo runs/calc-ppo -o docs/figures/calc_rl.svg \
    --metrics eval/success,success,kl,clip_frac --width 800
$MR plot runs/calc-sft-short -o docs/figures/calc_sft.svg --metrics loss
