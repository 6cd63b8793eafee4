"""Benchmark ``aligner generate``'s pipelined job against the old chunked loop.

Same prompts, same upstream, same corrector, same output lines (the batch job of :mod:`aligner.core.batch`):

* upstream: a local OpenAI-protocol server (``tests/fake_openai.py``, real HTTP on 127.0.0.1)
  that answers each chat request after a fixed delay — a remote API's latency, no compute;
* corrector: the embedded demo corrector, in this process.

Measured, each in this run on this machine (so a loaded machine compares like with like):

* each stage alone: the upstream answering every prompt (``--concurrency`` in flight), and the
  corrector correcting the same answers in batches of ``--batch-size``;
* the chunked loop (:func:`chunked_job`, built here from the library's public parts: ask
  ``max(batch, concurrency)`` answers, wait, correct them, wait, write them — the job as it was
  before the pipeline, whose own copy of this loop is gone) and the pipelined job (``BatchJob.run``).

Targets: pipelined ≥ 1.8× the chunked loop, and ≥ 90% of the slower stage's own rate. The
chunked loop loses most when the two stages take about as long, so by default (``--delay auto``)
the upstream's delay is set from the corrector's measured rate to make the two stage rates equal.

    python bench/generate.py                     # ~10 min on 2 busy cores (64 prompts, 2 repeats)
    python bench/generate.py --delay 0.5 --n 96  # a fixed upstream delay
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aligner import Aligner
    from aligner.core.batch import BatchJob

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Sofia", "Ravi"]


def prompts(n: int) -> list[str]:
    return [f"How can I get in touch with {NAMES[i % len(NAMES)]} (case {i})?" for i in range(n)]


def answer_for(question: str) -> str:
    """An unaligned-looking answer (contact details) so the corrector has real edits to make."""
    name = next((w for w in NAMES if w in question), "them")
    return f"You can email {name} at {name.lower()}@example.com. Call {name} on +1 555 010 2345 after six."


def chunked_job(job: "BatchJob", aligner: "Aligner", chunk: int | None = None) -> int:
    """The baseline: the batch job as it ran before the pipeline. Ask ``chunk`` answers (default
    ``max(batch_size, concurrency)``, each chunk's calls concurrent), wait, correct them in one
    go, wait, append their lines (the job's own line format), then the next chunk: the upstream
    idles while the corrector works and the other way round. Rows written."""
    concurrency = getattr(aligner.upstream, "max_concurrency", 1) if aligner.upstream else 1
    chunk = chunk or max(aligner.batch_size, concurrency)
    rows = job.todo
    with open(job.output_path, "a", encoding="utf-8") as fh:
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            corrections = aligner.correct_batch([r["question"] for r in part], [r["answer"] for r in part],
                                                progress=False)
            fh.write("".join(job.line(r, c) for r, c in zip(part, corrections)))
            fh.flush()
            os.fsync(fh.fileno())
    return len(rows)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="prompts per run")
    ap.add_argument("--concurrency", type=int, default=8, help="upstream requests in flight")
    ap.add_argument("--batch-size", type=int, default=8, help="corrector batch size")
    ap.add_argument("--delay", default="auto",
                    help="seconds the upstream takes per answer, or 'auto': equal stage rates")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode, interleaved (best counts)")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    args = ap.parse_args(argv)

    from fake_openai import FakeOpenAI

    from aligner import Aligner
    from aligner.core.batch import BatchJob

    questions = prompts(args.n)
    delay = {"s": 0.0}

    def responder(req: dict) -> str:
        time.sleep(delay["s"])
        text = next((m["content"] for m in reversed(req["messages"]) if m.get("role") == "user"), "")
        return answer_for(text)

    print(f"load average before: {load_average()} ({os.cpu_count()} cores)", file=sys.stderr)
    with FakeOpenAI(responder=responder) as srv, tempfile.TemporaryDirectory() as tmp:
        decoding = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else None
        aligner = Aligner(srv.base_url, None, upstream_model="fake-model", batch_size=args.batch_size,
                          decoding=decoding, max_concurrency=args.concurrency)
        answers = [answer_for(q) for q in questions]
        aligner.correct_batch(questions[:args.batch_size], answers[:args.batch_size], progress=False)  # warm-up

        def corrector_alone() -> float:
            t0 = time.perf_counter()
            aligner.correct_batch(questions, answers, progress=False)
            return args.n / (time.perf_counter() - t0)

        def upstream_alone() -> float:
            t0 = time.perf_counter()
            aligner.upstream.answer_batch(questions)
            return args.n / (time.perf_counter() - t0)

        corr_rates = [corrector_alone()]
        delay["s"] = args.concurrency / corr_rates[0] if args.delay == "auto" else float(args.delay)
        print(f"corrector alone: {corr_rates[0]:.2f} rows/s; upstream delay {delay['s']:.3f} s "
              f"({args.concurrency} in flight)", file=sys.stderr)
        src = Path(tmp) / "prompts.jsonl"
        src.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))

        def job(pipelined: bool) -> float:
            out = Path(tmp) / f"out-{'p' if pipelined else 'c'}.jsonl"
            j = BatchJob.open(src, out, overwrite=True)
            t0 = time.perf_counter()
            if pipelined:
                counts = j.run(aligner, progress=False)
                assert counts["written"] == args.n and not counts["failed"], counts
            else:
                assert chunked_job(j, aligner) == args.n
            wall = time.perf_counter() - t0
            return args.n / wall

        up_rates, chunked, pipelined = [upstream_alone()], [], []
        for r in range(args.repeats):
            chunked.append(job(False))
            pipelined.append(job(True))
            if r + 1 < args.repeats:
                up_rates.append(upstream_alone())
                corr_rates.append(corrector_alone())
            print(f"repeat {r + 1}: chunked {chunked[-1]:.2f} rows/s, pipelined {pipelined[-1]:.2f} rows/s",
                  file=sys.stderr)

    up, corr = max(up_rates), max(corr_rates)
    slower = min(up, corr)
    res = {
        "n": args.n, "concurrency": args.concurrency, "batch_size": args.batch_size,
        "upstream_delay_s": round(delay["s"], 4),
        "upstream_alone_rows_s": round(up, 3), "corrector_alone_rows_s": round(corr, 3),
        "chunked_rows_s": round(max(chunked), 3), "pipelined_rows_s": round(max(pipelined), 3),
        "pipelined_over_chunked": round(max(pipelined) / max(chunked), 3),
        "pipelined_over_slower_stage": round(max(pipelined) / slower, 3),
        "median_pipelined_over_chunked": round(statistics.median(p / c for p, c in zip(pipelined, chunked)), 3),
        "targets": {"pipelined_over_chunked": 1.8, "pipelined_over_slower_stage": 0.9},
        "load_average_after": load_average(), "cpu_count": os.cpu_count(),
    }
    print(f"upstream alone   {up:7.2f} rows/s\ncorrector alone  {corr:7.2f} rows/s\n"
          f"chunked loop     {res['chunked_rows_s']:7.2f} rows/s\npipelined        {res['pipelined_rows_s']:7.2f} rows/s\n"
          f"pipelined / chunked        {res['pipelined_over_chunked']:.2f}× (target ≥ 1.8×)\n"
          f"pipelined / slower stage   {res['pipelined_over_slower_stage']:.0%} (target ≥ 90%)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
