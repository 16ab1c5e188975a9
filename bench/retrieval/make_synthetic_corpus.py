"""Write a synthetic JSONL passage corpus for the retrieval benchmark.

The vocabulary is every distinct lower-cased word of the 2WikiMultihopQA
corpus in data/qa/, ranked by its count there, so that the real
questions find terms with realistic posting-list lengths. Words are drawn
from a Zipf distribution over those ranks (probability of rank r
proportional to 1 / r**s, s = 1.0 by default). Each passage has a title
of 2 to 4 words and a text whose length is drawn uniformly from 40 to 80
words (60 on average). The same seed gives the same file.

Usage:
  /usr/bin/python3 bench/retrieval/make_synthetic_corpus.py OUT.jsonl \
      [--passages 1000000] [--seed 1] [--zipf 1.0]

Needs numpy. The output for one million passages is about 420 MB; keep
it out of git.
"""
import argparse
import collections
import json
import os
import re
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "data", "qa", "2wikimultihopqa_corpus_hipporag.jsonl")
CHUNK = 10000


def load_vocabulary(path):
    """Return the distinct lower-cased words of the corpus, most frequent first."""
    counts = collections.Counter()
    with open(path, encoding="utf-8") as corpus:
        for line in corpus:
            passage = json.loads(line)
            text = passage["title"] + " " + passage["text"]
            counts.update(re.findall(r"\w+", text.lower()))
    # Ties are ordered by the word so that the ranking is reproducible.
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the JSONL file to write")
    parser.add_argument("--passages", type=int, default=1_000_000,
                        help="number of passages (default 1000000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--zipf", type=float, default=1.0,
                        help="Zipf exponent s of the word ranks (default 1.0)")
    args = parser.parse_args()

    vocabulary = np.array(load_vocabulary(SOURCE), dtype=object)
    ranks = np.arange(1, len(vocabulary) + 1, dtype=np.float64)
    probabilities = ranks ** -args.zipf
    probabilities /= probabilities.sum()
    rng = np.random.default_rng(args.seed)

    with open(args.output, "w", encoding="utf-8") as out:
        for start in range(0, args.passages, CHUNK):
            count = min(CHUNK, args.passages - start)
            title_lengths = rng.integers(2, 5, size=count)
            text_lengths = rng.integers(40, 81, size=count)
            words = rng.choice(len(vocabulary), size=int(title_lengths.sum() + text_lengths.sum()),
                               p=probabilities)
            at = 0
            lines = []
            for i in range(count):
                title = " ".join(vocabulary[words[at:at + title_lengths[i]]]).capitalize()
                at += title_lengths[i]
                text = " ".join(vocabulary[words[at:at + text_lengths[i]]])
                at += text_lengths[i]
                lines.append(json.dumps({"id": start + i, "title": title, "text": text},
                                        ensure_ascii=False))
            out.write("\n".join(lines) + "\n")
    print(f"wrote {args.passages} passages over {len(vocabulary)} words to {args.output}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
