#!/bin/sh
# The calculator task end to end, from the repository root after a
# Release build in build/: SFT of a random model on correct transcripts,
# then GRPO and, separately, PPO from the SFT model, then the plots.
# One thread per run: these models are so small that a second OpenMP
# thread costs more in synchronisation than it saves. Each run
# checkpoints, so a killed run continues where it stopped when its line
# is run again with --resume added.
set -e
MR=${MR:-build/multiround}

$MR --threads 1 train sft --config examples/train/calc_sft.json
$MR --threads 1 train grpo --config examples/train/calc_grpo.json
$MR --threads 1 train ppo --config examples/train/calc_ppo.json

$MR plot runs/calc-grpo runs/calc-ppo -o docs/figures/calc_rl.svg \
    --metrics eval/success,success,kl,clip_frac --width 800
$MR plot runs/calc-sft -o docs/figures/calc_sft.svg --metrics loss
