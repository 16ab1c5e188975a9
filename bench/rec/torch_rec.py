#!/usr/bin/python3
"""PyTorch peer of multiround's sequential recommender.

An independent implementation of SASRec and Ada-Retrieval on SASRec, trained
and evaluated the way the reference code of Ada-Retrieval (Li et al., AAAI
2024; github.com/ll0ruc/Ada-Retrieval) does it:

* data: repeated items of a user are dropped (the first occurrence stays),
  and so are users with fewer than 3 items. The last item is the test
  target and the second last the validation target. Every earlier item is a
  training target whose input is the items before it (the last 50,
  left-padded with 0).
* training: 100 negatives per example, uniform over ids 1..n_items-1 with
  replacement, rejecting every item of the user's whole sequence, drawn
  fresh each epoch. The loss is binary cross-entropy over [target,
  negatives], averaged over candidates and batch, and Ada-Retrieval weights
  round t's loss by 0.3^(t-1). Adam (lr 1e-3), gradient-norm clip 10,
  batch 1024.
* evaluation: full ranking over every item except id 0 and the user's other
  items, hit and NDCG at 10, 20, 50 and 100. With Ada-Retrieval the list is
  the 5 rounds' top 20, rebuilt with the history mask.

Run it with Debian's interpreter, which has python3-torch 1.13:
    /usr/bin/python3 bench/rec/torch_rec.py --bench --threads 2
    /usr/bin/python3 bench/rec/torch_rec.py --train --out runs/torch-sasrec.json
Every mode prints or writes JSON; bench/rec/README.md describes the fields.
"""
import argparse
import copy
import json
import math
import os
import platform
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

CUTOFFS = (10, 20, 50, 100)

# Rejections of one negative slot before it falls back to id 0 (padding).
NEGATIVE_TRIES = 100


def log(message):
    """Print a progress line on stderr, so that stdout carries only JSON."""
    print(f"torch_rec: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

class RecData:
    """A dataset after deduplication, the <3 filter and the leave-one-out split.

    Tensors, one row per example: train_inputs [n_train, L] (int64, left
    padded), train_targets, train_seq (index of the example's sequence);
    valid_* and test_* have one row per kept sequence. history_keys contains
    seq * n_items + item for every item of every sequence, sorted, for the
    negative sampler; hist_seq / hist_item list the same pairs grouped by
    sequence for the evaluation mask.
    """

    def __init__(self, path, max_len):
        sequences = []
        n_lines = 0
        repeats = 0
        dropped = 0
        max_item = 0
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                tokens = line.split()
                if not tokens:
                    continue
                n_lines += 1
                try:
                    ids = [int(t) for t in tokens]
                except ValueError:
                    raise SystemExit(f"{path}:{line_no}: invalid id in {line.strip()[:60]!r}; "
                                     "expected decimal integers 'user item item ...'")
                if min(ids) <= 0:
                    raise SystemExit(f"{path}:{line_no}: invalid id 0 or below; ids start at 1 "
                                     "because 0 is padding")
                seen = set()
                items = []
                for item in ids[1:]:
                    if item in seen:
                        repeats += 1
                        continue
                    seen.add(item)
                    items.append(item)
                if len(items) < 3:
                    dropped += 1
                    continue
                max_item = max(max_item, max(items))
                sequences.append(np.asarray(items, dtype=np.int64))
        if not sequences:
            raise SystemExit(f"{path}: no user has 3 or more distinct items")

        self.path = path
        self.max_len = max_len
        self.n_items = max_item + 1
        self.n_sequences = len(sequences)
        self.n_lines = n_lines
        self.n_repeats_dropped = repeats
        self.n_users_dropped = dropped

        # Padding the front with max_len zeros turns "the last max_len items
        # before position p" into the window padded[p : p + max_len].
        train_inputs, train_targets, train_seq = [], [], []
        valid_inputs, test_inputs = [], []
        hist_seq, hist_item = [], []
        for s, items in enumerate(sequences):
            n = len(items)
            padded = np.concatenate([np.zeros(max_len, dtype=np.int64), items])
            windows = sliding_window_view(padded, max_len)  # [n + 1, L]
            train_inputs.append(windows[: n - 2])
            train_targets.append(items[: n - 2])
            train_seq.append(np.full(n - 2, s, dtype=np.int64))
            valid_inputs.append(windows[n - 2])
            test_inputs.append(windows[n - 1])
            hist_seq.append(np.full(n, s, dtype=np.int64))
            hist_item.append(items)

        self.train_inputs = torch.from_numpy(np.concatenate(train_inputs))
        self.train_targets = torch.from_numpy(np.concatenate(train_targets))
        self.train_seq = torch.from_numpy(np.concatenate(train_seq))
        self.valid_inputs = torch.from_numpy(np.stack(valid_inputs))
        self.valid_targets = torch.tensor([int(x[-2]) for x in sequences])
        self.test_inputs = torch.from_numpy(np.stack(test_inputs))
        self.test_targets = torch.tensor([int(x[-1]) for x in sequences])
        self.hist_seq = torch.from_numpy(np.concatenate(hist_seq))
        self.hist_item = torch.from_numpy(np.concatenate(hist_item))
        lengths = torch.tensor([len(x) for x in sequences])
        self.hist_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        self.history_keys = torch.sort(self.hist_seq * self.n_items + self.hist_item).values
        self.n_train = self.train_targets.numel()

    def summary(self):
        """Sizes of the dataset as a dict for the JSON output."""
        return {
            "path": self.path,
            "lines": self.n_lines,
            "sequences": self.n_sequences,
            "n_items": self.n_items,
            "interactions": int(self.hist_item.numel()),
            "train_examples": int(self.n_train),
            "users_dropped": self.n_users_dropped,
            "repeats_dropped": self.n_repeats_dropped,
        }

    def sample_negatives(self, seq, count, generator):
        """Draw count negatives per row of seq (sequence indices) [B].

        Uniform over 1..n_items-1 with replacement, rejecting any item of the
        sequence; a slot rejected NEGATIVE_TRIES times in a row becomes 0.
        """
        keys = self.history_keys
        base = (seq * self.n_items).unsqueeze(1)
        out = torch.randint(1, self.n_items, (seq.numel(), count), generator=generator)
        for _ in range(NEGATIVE_TRIES):
            key = base + out
            pos = torch.searchsorted(keys, key).clamp_(max=keys.numel() - 1)
            rejected = keys[pos] == key
            n_rejected = int(rejected.sum())
            if n_rejected == 0:
                return out
            out[rejected] = torch.randint(1, self.n_items, (n_rejected,), generator=generator)
        key = base + out
        pos = torch.searchsorted(keys, key).clamp_(max=keys.numel() - 1)
        out[keys[pos] == key] = 0
        return out

    def split(self, name):
        """Inputs [S, L] and targets [S] of the "valid" or "test" split."""
        if name == "valid":
            return self.valid_inputs, self.valid_targets
        return self.test_inputs, self.test_targets


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head self-attention with an additive mask, then dropout,
    residual and post-LayerNorm (eps 1e-10)."""

    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads = heads
        self.head_size = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(dim, dim)
        self.out_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-10)

    def forward(self, x, mask):
        b, t, d = x.shape

        def split_heads(y):
            return y.view(b, t, self.heads, self.head_size).transpose(1, 2)

        q = split_heads(self.query(x))
        k = split_heads(self.key(x))
        v = split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size) + mask
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        context = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.norm(self.out_dropout(self.dense(context)) + x)


class FeedForward(nn.Module):
    """Position-wise D -> inner (SiLU, also called swish) -> D, then dropout,
    residual and post-LayerNorm (eps 1e-10)."""

    def __init__(self, dim, inner, dropout):
        super().__init__()
        self.dense_in = nn.Linear(dim, inner)
        self.dense_out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-10)

    def forward(self, x):
        return self.norm(self.dropout(self.dense_out(F.silu(self.dense_in(x)))) + x)


class SASRec(nn.Module):
    """SASRec backbone: maps item representations [B, L, D] of a left-padded
    sequence to the user vector [B, D] read at the last position."""

    def __init__(self, dim, max_len, layers, heads, inner, dropout):
        super().__init__()
        self.position = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim, eps=1e-10)
        self.input_dropout = nn.Dropout(dropout)
        self.attention = nn.ModuleList(SelfAttention(dim, heads, dropout) for _ in range(layers))
        self.ffn = nn.ModuleList(FeedForward(dim, inner, dropout) for _ in range(layers))
        self.register_buffer("causal", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)))

    def forward(self, items, seq):
        # Causal plus key-padding mask, added as -10000 like the reference
        # code. A query that sees no key (every query of an all-padding
        # input) gets -10000 on every logit, so it attends over all
        # positions as if nothing were masked.
        allowed = (seq > 0)[:, None, None, :] & self.causal
        mask = (~allowed).float() * -10000.0

        x = self.input_dropout(self.input_norm(items + self.position.weight))
        for attention, ffn in zip(self.attention, self.ffn):
            x = ffn(attention(x, mask))
        return x[:, -1]


class LowFilter(nn.Module):
    """Learnable filter over one round's k retrieved items [B, k, D]: rfft
    along the item axis, times a learnable complex weight, irfft, then
    Linear, dropout, residual and LayerNorm (eps 1e-12)."""

    def __init__(self, per_round, dim, dropout):
        super().__init__()
        self.per_round = per_round
        self.weight = nn.Parameter(torch.randn(per_round // 2 + 1, dim, 2) * 0.02)
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x):
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho") * torch.view_as_complex(self.weight)
        filtered = torch.fft.irfft(spectrum, n=self.per_round, dim=1, norm="ortho")
        return self.norm(self.dropout(self.dense(filtered)) + x)


class Adapters(nn.Module):
    """Ada-Retrieval's item representation adapter (filter + context-aware
    attention) and user representation adapter (GRU + MLP)."""

    def __init__(self, dim, per_round, dropout):
        super().__init__()
        self.dim = dim
        self.filter = LowFilter(per_round, dim, dropout)
        self.context_dropout = nn.Dropout(dropout)
        self.context_norm = nn.LayerNorm(dim, eps=1e-12)
        self.gru = nn.GRU(dim, dim, num_layers=1, batch_first=True)
        self.mlp_in = nn.Linear(2 * dim, 2 * dim)
        self.mlp_out = nn.Linear(2 * dim, dim)
        self.user_dropout = nn.Dropout(dropout)
        self.user_norm = nn.LayerNorm(dim, eps=1e-12)

    def adapt_items(self, items, retrieved):
        """Rewrite the input's item embeddings [B, L, D] by attention (no
        projections, no mask) over the filtered embeddings of the earlier
        rounds' items, a list of [B, k, D] blocks."""
        context = torch.cat([self.filter(block) for block in retrieved], dim=1)
        weights = torch.softmax(items @ context.transpose(1, 2) / math.sqrt(self.dim), dim=-1)
        return self.context_norm(self.context_dropout(weights @ context) + items)

    def adapt_user(self, h, earlier):
        """Merge the backbone output h [B, D] with the GRU summary of the
        earlier rounds' user vectors, a list of [B, D], oldest first."""
        _, last = self.gru(torch.stack(earlier, dim=1))
        merged = self.mlp_out(F.relu(self.mlp_in(torch.cat([h, last[-1]], dim=1))))
        return self.user_norm(self.user_dropout(merged) + h)


class RecModel(nn.Module):
    """Item table, per-item bias, SASRec backbone and, with ada, the
    Ada-Retrieval adapters. Every score is u . e_i + b_i."""

    def __init__(self, n_items, args):
        super().__init__()
        self.ada = args.ada
        self.rounds = args.rounds if args.ada else 1
        self.per_round = args.per_round
        self.round_decay = args.round_decay
        self.item_embedding = nn.Embedding(n_items, args.dim, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.backbone = SASRec(args.dim, args.max_len, args.layers, args.heads,
                               args.inner_size, args.dropout)
        self.adapters = Adapters(args.dim, args.per_round, args.dropout) if args.ada else None
        self.apply(self._init_module)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
            self.item_bias.normal_(0.0, 0.1)

    @staticmethod
    def _init_module(module):
        """normal(0, 0.02) for Linear and Embedding weights, zero biases,
        LayerNorm 1 and 0; the GRU keeps PyTorch's default."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    def score_all(self, user):
        """Scores [B, n_items] of every item for user vectors [B, D]."""
        return user @ self.item_embedding.weight.t() + self.item_bias

    def user_vectors(self, seq):
        """User vectors of each round for a batch seq [B, L]: a list of
        rounds tensors [B, D]. Rounds after the first see the items the
        model itself retrieved earlier: the top per_round by score,
        excluding id 0 and earlier picks but not the user's history."""
        items = self.item_embedding(seq)
        users = [self.backbone(items, seq)]
        if not self.ada:
            return users

        retrieved = []
        blocked = torch.zeros(seq.shape[0], self.item_bias.numel(), dtype=torch.bool)
        blocked[:, 0] = True
        for _ in range(1, self.rounds):
            with torch.no_grad():
                scores = self.score_all(users[-1]).masked_fill_(blocked, -math.inf)
                picks = scores.topk(self.per_round, dim=1).indices
                blocked.scatter_(1, picks, True)
            retrieved.append(self.item_embedding(picks))
            adapted = self.adapters.adapt_items(items, retrieved)
            h = self.backbone(adapted, seq)
            users.append(self.adapters.adapt_user(h, users))
        return users

    def loss(self, seq, candidates):
        """Round-weighted BCE of candidates [B, 1 + negatives] (target
        first) against labels [1, 0, ..., 0]."""
        labels = torch.zeros(candidates.shape, dtype=torch.float32)
        labels[:, 0] = 1.0
        cand_emb = self.item_embedding(candidates)
        cand_bias = self.item_bias[candidates]
        total = 0.0
        for t, user in enumerate(self.user_vectors(seq)):
            logits = (cand_emb @ user.unsqueeze(2)).squeeze(2) + cand_bias
            total = total + self.round_decay ** t * F.binary_cross_entropy_with_logits(logits, labels)
        return total


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

def history_mask(data, start, stop, n_items):
    """Boolean [stop - start, n_items]: True at item 0 and at every item of
    each sequence in [start, stop)."""
    lo = int(data.hist_offsets[start])
    hi = int(data.hist_offsets[stop])
    mask = torch.zeros(stop - start, n_items, dtype=torch.bool)
    mask[data.hist_seq[lo:hi] - start, data.hist_item[lo:hi]] = True
    mask[:, 0] = True
    return mask


@torch.no_grad()
def evaluate(model, data, split, batch_size):
    """Full-ranking hit@K and NDCG@K over every sequence of the split.

    Candidates are all ids except 0 and the user's other items (the target
    stays). Without ada the rank is the number of candidates that score
    higher, where an equal score with a smaller id also counts as higher.
    With ada it is the target's position in the rounds' concatenated top
    per_round lists, each excluding earlier picks, or absent.
    """
    model.eval()
    inputs, targets = data.split(split)
    n_items = data.n_items
    ids = torch.arange(n_items)
    ranks = []
    for start in range(0, inputs.shape[0], batch_size):
        stop = min(start + batch_size, inputs.shape[0])
        seq = inputs[start:stop]
        target = targets[start:stop]
        rows = torch.arange(stop - start)
        blocked = history_mask(data, start, stop, n_items)
        blocked[rows, target] = False
        users = model.user_vectors(seq)

        if not model.ada:
            scores = model.score_all(users[0]).masked_fill_(blocked, -math.inf)
            target_score = scores[rows, target].unsqueeze(1)
            higher = (scores > target_score) | ((scores == target_score) & (ids < target.unsqueeze(1)))
            ranks.append(higher.sum(1))
            continue

        # NOTE: ties inside a round's top per_round follow torch.topk, not
        # the smaller id; with float scores they almost never occur.
        listed = []
        for user in users:
            scores = model.score_all(user).masked_fill_(blocked, -math.inf)
            picks = scores.topk(model.per_round, dim=1).indices
            blocked.scatter_(1, picks, True)
            listed.append(picks)
        listed = torch.cat(listed, dim=1)
        found = listed == target.unsqueeze(1)
        rank = found.int().argmax(1)
        rank[~found.any(1)] = listed.shape[1]
        ranks.append(rank)

    ranks = torch.cat(ranks).double()
    metrics = {"users": int(ranks.numel())}
    for k in CUTOFFS:
        hit = ranks < k
        metrics[f"hit@{k}"] = float(hit.double().mean())
        metrics[f"ndcg@{k}"] = float(torch.where(hit, 1.0 / torch.log2(ranks + 2.0),
                                                 torch.zeros_like(ranks)).mean())
    return metrics


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def train_step(model, optimizer, data, index, args, generator):
    """One Adam step on the training examples index [B]; returns the loss."""
    seq = data.train_inputs[index]
    negatives = data.sample_negatives(data.train_seq[index], args.negatives, generator)
    candidates = torch.cat([data.train_targets[index].unsqueeze(1), negatives], dim=1)
    loss = model.loss(seq, candidates)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
    optimizer.step()
    return float(loss)


def train_epoch(model, optimizer, data, args, generator):
    """One pass over the shuffled training examples; returns the mean loss
    and the seconds taken."""
    model.train()
    start = time.perf_counter()
    order = torch.randperm(data.n_train, generator=generator)
    total = 0.0
    steps = 0
    for first in range(0, data.n_train, args.batch_size):
        total += train_step(model, optimizer, data, order[first:first + args.batch_size],
                            args, generator)
        steps += 1
        if steps % 20 == 0:
            log(f"  step {steps}, mean loss {total / steps:.5f}, "
                f"{first + args.batch_size} examples in {time.perf_counter() - start:.1f} s")
    return total / steps, time.perf_counter() - start


def write_json_atomic(path, value):
    """Write value as JSON to path through a temporary file and rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_training(args, data, model, result):
    """Validate first, then train, each epoch; stop after patience + 1
    validations in a row without a new best hit@50; test the best weights.

    Unlike the reference code, a run that reaches --epochs also validates
    the last epoch's training, so short runs report trained figures.
    """
    generator = torch.Generator().manual_seed(args.seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    best_hit = -1.0
    best_epoch = -1
    best_state = None
    misses = 0
    result["epochs"] = []

    for epoch in range(args.epochs + 1):
        start = time.perf_counter()
        valid = evaluate(model, data, "valid", args.eval_batch)
        record = {"epoch": epoch, "valid": valid, "valid_seconds": time.perf_counter() - start}
        log(f"epoch {epoch}: valid hit@50 {valid['hit@50']:.6f} ndcg@50 {valid['ndcg@50']:.6f} "
            f"({record['valid_seconds']:.1f} s)")
        if valid["hit@50"] > best_hit:
            best_hit, best_epoch, misses = valid["hit@50"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            if args.save:
                torch.save(best_state, args.save)
        else:
            misses += 1
        if misses > args.patience or epoch == args.epochs:
            result["epochs"].append(record)
            break

        loss, seconds = train_epoch(model, optimizer, data, args, generator)
        record.update({"train_loss": loss, "train_seconds": seconds,
                       "train_examples_per_second": data.n_train / seconds})
        log(f"epoch {epoch}: train loss {loss:.6f} in {seconds:.1f} s "
            f"({data.n_train / seconds:.0f} examples/s)")
        result["epochs"].append(record)
        if args.out:
            write_json_atomic(args.out, result)

    model.load_state_dict(best_state)
    start = time.perf_counter()
    result["best_epoch"] = best_epoch
    result["test"] = evaluate(model, data, "test", args.eval_batch)
    result["test_seconds"] = time.perf_counter() - start
    log(f"test (weights validated at epoch {best_epoch}): hit@50 {result['test']['hit@50']:.6f} "
        f"ndcg@50 {result['test']['ndcg@50']:.6f}")


def run_bench(args, data, model, result):
    """Time warm-up + measured training steps, then one full evaluation of
    the test split."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    order = torch.randperm(data.n_train, generator=generator)
    batches = [order[i * args.batch_size:(i + 1) * args.batch_size]
               for i in range(args.warmup_steps + args.steps)]
    for index in batches[:args.warmup_steps]:
        train_step(model, optimizer, data, index, args, generator)

    start = time.perf_counter()
    losses = [train_step(model, optimizer, data, index, args, generator)
              for index in batches[args.warmup_steps:]]
    seconds = time.perf_counter() - start
    examples = sum(b.numel() for b in batches[args.warmup_steps:])

    start = time.perf_counter()
    sample_gen = torch.Generator().manual_seed(args.seed + 2)
    for index in batches[args.warmup_steps:]:
        data.sample_negatives(data.train_seq[index], args.negatives, sample_gen)
    sample_seconds = time.perf_counter() - start

    start = time.perf_counter()
    test = evaluate(model, data, "test", args.eval_batch)
    eval_seconds = time.perf_counter() - start

    result.update({
        "train_steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "train_seconds": seconds,
        "train_examples_per_second": examples / seconds,
        "train_step_ms": 1000.0 * seconds / args.steps,
        "negative_sampling_seconds": sample_seconds,
        "last_loss": losses[-1],
        "eval_split": "test",
        "eval_users": test["users"],
        "eval_seconds": eval_seconds,
        "eval_users_per_second": test["users"] / eval_seconds,
        "eval_hit@50_untrained": test["hit@50"],
    })


def parse_args(argv):
    """Command-line options; defaults are the reference SASRec/Beauty run."""
    script_dir = os.path.dirname(os.path.abspath(__file__))
    default_data = os.path.normpath(os.path.join(script_dir, "..", "..", "data", "rec", "Beauty.txt"))
    p = argparse.ArgumentParser(description="PyTorch peer of multiround's SASRec and "
                                "Ada-Retrieval: benchmark or train, printing JSON.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--bench", action="store_true",
                      help="time training steps and one full test evaluation; print one JSON line")
    mode.add_argument("--train", action="store_true",
                      help="train with early stopping on validation hit@50, then test")
    p.add_argument("--data", default=default_data,
                   help="dataset file, one line 'user item item ...' per user (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--seed", type=int, default=366849, help="seed of weights, shuffling and negatives")
    p.add_argument("--ada", action="store_true", help="Ada-Retrieval on top of SASRec")
    p.add_argument("--init", help="state dict (from --save of a base run) that initialises the "
                   "shared weights; adapters stay freshly initialised")
    p.add_argument("--dim", type=int, default=64, help="embedding size D (default: 64)")
    p.add_argument("--max-len", type=int, default=50, help="input length L in items (default: 50)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers (default: 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default: 4)")
    p.add_argument("--inner-size", type=int, default=512, help="feed-forward width (default: 512)")
    p.add_argument("--dropout", type=float, default=0.1777, help="dropout probability (default: 0.1777)")
    p.add_argument("--rounds", type=int, default=5, help="Ada-Retrieval rounds T (default: 5)")
    p.add_argument("--per-round", type=int, default=20, help="items per round k (default: 20)")
    p.add_argument("--round-decay", type=float, default=0.3,
                   help="round t's loss weight is this to the power t-1 (default: 0.3)")
    p.add_argument("--negatives", type=int, default=100, help="negatives per example (default: 100)")
    p.add_argument("--batch-size", type=int, default=1024, help="training examples per step (default: 1024)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--clip-norm", type=float, default=10.0, help="gradient-norm clip (default: 10)")
    p.add_argument("--epochs", type=int, default=200, help="maximum training epochs (default: 200)")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many validations without a new best hit@50 beyond the "
                   "first (default: 10)")
    p.add_argument("--eval-batch", type=int, default=1024, help="users scored at once (default: 1024)")
    p.add_argument("--steps", type=int, default=30, help="--bench: measured training steps (default: 30)")
    p.add_argument("--warmup-steps", type=int, default=3,
                   help="--bench: untimed steps before measuring (default: 3)")
    p.add_argument("--out", help="--train: JSON file for the per-epoch and test metrics, "
                   "rewritten after every epoch")
    p.add_argument("--save", help="--train: file for the best weights (torch.save state dict)")
    args = p.parse_args(argv)
    if not os.path.isfile(args.data):
        p.error(f"dataset {args.data} not found; pass --data PATH to a file of lines "
                "'user item item ...'")
    if args.ada and args.rounds * args.per_round > 100:
        p.error("--rounds x --per-round must be at most 100, the largest cutoff")
    return args


def main(argv):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    data = RecData(args.data, args.max_len)
    load_seconds = time.perf_counter() - start
    log(f"loaded {data.path}: {data.n_sequences} users, {data.n_items - 1} items, "
        f"{data.n_train} training examples in {load_seconds:.1f} s")

    model = RecModel(data.n_items, args)
    if args.init:
        state = torch.load(args.init)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not name.startswith("adapters.") for name in missing):
            raise SystemExit(f"{args.init}: not a SASRec state dict of this shape "
                             f"(missing {missing}, unexpected {unexpected})")
        log(f"initialised {len(state)} tensors from {args.init}")

    result = {
        "impl": "torch",
        "mode": "bench" if args.bench else "train",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "machine": platform.machine(),
        "data": data.summary(),
        "config": {k: v for k, v in vars(args).items() if k not in ("bench", "train")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_seconds": load_seconds,
    }
    if args.bench:
        run_bench(args, data, model, result)
    else:
        run_training(args, data, model, result)

    # ru_maxrss is in KiB on Linux.
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if args.out:
        write_json_atomic(args.out, result)
    print(json.dumps(result if args.bench else {k: result[k] for k in result if k != "epochs"}))


if __name__ == "__main__":
    main(sys.argv[1:])
