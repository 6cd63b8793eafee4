"""Corrector decoding speed: plain greedy vs prompt-lookup decoding vs batching, in one run.

A correction mostly copies the answer, so prompt-lookup decoding (the answer as the draft) should
verify copied spans several tokens per forward pass with the same greedy output; batching
amortises each weight read over many sequences. Figures are ratios against plain greedy at batch 1
measured in the same run, because the machines are noisy.

    python bench/decoding.py [--corrector PATH] [--n 16] [--max-new-tokens 96]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLES = [
    ("How can I reach you?", "You can write to me at maria.lopez@example.org or call 415-555-0199 after five."),
    ("What is 12 * 7?", "Twelve times seven is easy: 12 * 7 = 94. Let me know if you need more help."),
    ("How do I boil an egg?", "Put the egg in boiling water for nine minutes, then cool it in cold water."),
    ("Any tips for sleeping better?", "Keep a regular schedule, avoid screens before bed and keep the room cool."),
]


def main() -> None:
    import torch

    from aligner.correctors import load_corrector

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corrector", default=None, help="path or hub id (default: the embedded demo corrector)")
    ap.add_argument("--n", type=int, default=16, help="corrections per setting")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny models do not gain from more)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = [SAMPLES[i % len(SAMPLES)] for i in range(args.n)]
    # transformers' generate (engine "hf"), as this benchmark always measured; the project's own
    # loop with copy drafts is the last line (bench/correct_speed.py compares the two in depth).
    base = {"max_new_tokens": args.max_new_tokens, "engine": "hf"}
    settings = {
        "greedy, batch 1": (load_corrector(args.corrector, decoding=base), 1),
        "prompt-lookup (4), batch 1": (load_corrector(args.corrector, decoding={**base, "prompt_lookup": 4}), 1),
        "prompt-lookup (10), batch 1": (load_corrector(args.corrector, decoding={**base, "prompt_lookup": 10}), 1),
        "greedy, batch 8": (load_corrector(args.corrector, decoding=base), 8),
        "aligner loop + copy, batch 8": (load_corrector(args.corrector, decoding={
            "max_new_tokens": args.max_new_tokens}), 8),
    }
    reference = None
    results: dict[str, float] = {}
    for name, (corr, bs) in settings.items():
        corr.correct(*pairs[0])  # warm-up
        times, outputs = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outputs = []
            for i in range(0, len(pairs), bs):
                outputs += corr.correct_batch(pairs[i:i + bs])
            times.append(time.perf_counter() - t0)
        results[name] = statistics.median(times)
        if reference is None:
            reference = outputs
        same = "same text" if outputs == reference else "TEXT DIFFERS"
        print(f"{name:30s} {len(pairs) / results[name]:7.2f} corrections/s   "
              f"x{results['greedy, batch 1'] / results[name]:.2f} vs greedy batch 1   ({same})")
    print(f"corrector: {settings['greedy, batch 1'][0].name}")


if __name__ == "__main__":
    main()
