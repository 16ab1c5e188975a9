"""One full training step (forward, backward, AdamW update) of the small GPT
in PyTorch, the peer of bench/bench_train_step.c: the same model (2 layers,
4 heads, C = 128, V = 4608, context 50), batch 64 x 50, timed over --steps
steps after --warmup untimed ones with torch.set_num_threads(--threads).

The model is the one in tests/fixtures/torch_gpt.py; attention is written
out (scores, causal mask, softmax) because PyTorch 1.13 has no fused
scaled_dot_product_attention.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_train_step.py
Prints one summary line: "torch ms_per_step X tokens_per_s Y".
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures"))
from torch_gpt import GPT  # noqa: E402

BATCH, LENGTH = 64, 50


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads value (default: the number of cores)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default: 20)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps before timing (default: 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    model = GPT(vocab_size=4608, context=LENGTH, layers=2, heads=4, channels=128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    tokens = torch.randint(0, 4608, (BATCH, LENGTH))
    targets = torch.randint(0, 4608, (BATCH, LENGTH))

    def step():
        _, loss = model(tokens, targets)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps

    params = sum(p.numel() for p in model.parameters())
    print(f"torch_train_step: {params} parameters, batch {BATCH} x {LENGTH}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{args.steps} steps after {args.warmup} warm-up")
    print(f"torch ms_per_step {per_step * 1e3:.2f} tokens_per_s {BATCH * LENGTH / per_step:.0f}")


if __name__ == "__main__":
    main()
