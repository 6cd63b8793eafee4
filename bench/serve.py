"""Benchmark ``aligner serve``: dynamic batching on vs off, and the proxy's own overhead.

Requests/s and p50/p95 latency at concurrency 1, 4 and 16 against a real uvicorn on 127.0.0.1,
with a local callable upstream (so the upstream costs nothing and the corrector is the bottleneck,
as it is in production once the upstream is a remote API). Every figure is a ratio of two numbers
measured in this same run on this same machine, so a noisy or shared machine still compares like
with like:

* throughput at concurrency 16, batching on ÷ off           (target ≥ 3×)
* proxy overhead = (proxy p50 − in-process ``Aligner.correct`` p50) ÷ in-process p50, one
  request at a time, batching on, the two measured interleaved  (target < 5%)

    python bench/serve.py                      # tiny model, ~1 min on 2 cores
    python bench/serve.py --corrector PATH     # the demo corrector or any other
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS = [f"Question {i}: how do I keep my {w} in good shape?" for i, w in
             enumerate(["garden", "bike", "laptop", "shoes", "car", "teeth", "roof", "piano"] * 16)]


def upstream(question: str) -> str:
    """A free, instant upstream: the benchmark measures the proxy and the corrector."""
    return f"For {question.split(':')[0].lower()}, clean it weekly and check it every month."


def tiny_corrector(root: Path) -> str:
    from aligner.train.tiny import make_tiny_corrector

    texts = ["How do I bake bread? Mix flour, water, salt and yeast, then bake at 220 C."] + QUESTIONS + \
        [upstream(q) for q in QUESTIONS]
    return str(make_tiny_corrector(root / "tiny", texts, "causal", context=512, template="aligner-v1.0",
                                   init_scale=10.0))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def load(base_url: str, concurrency: int, n: int) -> dict[str, float]:
    """``n`` requests from ``concurrency`` workers; latency per request, throughput overall."""
    import httpx

    latencies: list[float] = []
    queue = list(QUESTIONS[:n])

    async with httpx.AsyncClient(base_url=base_url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def worker() -> None:
            while queue:
                q = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json={"model": "aligner",
                                                                  "messages": [{"role": "user", "content": q}]})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"rps": n / wall, "p50": pct(latencies, 50), "p95": pct(latencies, 95), "n": n}


def overhead_pairs(aligner, base_url: str, n: int = 16) -> tuple[list[float], list[float]]:
    """Latency of the same correction in-process and through the proxy, interleaved pair by pair
    so drift in machine load hits both alike. The in-process call runs in a worker thread, as the
    server runs its corrector, so the difference is HTTP + JSON + asyncio + the batcher."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    inproc, proxied = [], []
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=base_url, timeout=300) as client:
        for q in QUESTIONS[:n]:
            t0 = time.perf_counter()
            pool.submit(aligner.correct, q).result()
            inproc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.post("/chat/completions", json={"model": "aligner", "messages": [{"role": "user", "content": q}]}
                        ).raise_for_status()
            proxied.append(time.perf_counter() - t0)
    return inproc, proxied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corrector", help="corrector path or hub id (default: a tiny random model built now)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests-per-worker", type=int, default=4)
    ap.add_argument("--plot", default="docs/serve-bench.png", help="PNG to write ('' to skip)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    from aligner import Aligner
    from aligner.serve.app import create_app
    from aligner.serve.config import ServeConfig
    from aligner.serve.runner import ServerThread

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        corrector = args.corrector or tiny_corrector(Path(tmp))
        aligner = Aligner(upstream, corrector=corrector, decoding={"max_new_tokens": args.max_new_tokens})
        aligner.correct(QUESTIONS[0])  # warm-up (first call allocates)

        results: dict[str, dict[int, dict[str, float]]] = {}
        for batching in (True, False):
            mode = "on" if batching else "off"
            results[mode] = {}
            cfg = ServeConfig(batching=batching, max_batch_size=16, access_log=False)
            with ServerThread(create_app(aligner, cfg)) as srv:
                asyncio.run(load(srv.base_url, 1, 2))  # warm-up
                if batching:
                    inproc, proxied = overhead_pairs(aligner, srv.base_url)
                for c in args.concurrency:
                    n = max(8, c * args.requests_per_worker)
                    results[mode][c] = asyncio.run(load(srv.base_url, c, n))
                    print(f"batching {mode:3s}  concurrency {c:3d}: {results[mode][c]['rps']:7.1f} req/s  "
                          f"p50 {results[mode][c]['p50'] * 1000:7.1f} ms  p95 {results[mode][c]['p95'] * 1000:7.1f} ms",
                          file=sys.stderr)

    top = max(args.concurrency)
    speedup = results["on"][top]["rps"] / results["off"][top]["rps"]
    inproc_p50, proxy_p50 = statistics.median(inproc), statistics.median(proxied)
    overhead = (proxy_p50 - inproc_p50) / inproc_p50
    summary = {"corrector": corrector if args.corrector else "tiny random Llama (2 layers, d=64)",
               "max_new_tokens": args.max_new_tokens, "results": results,
               "inprocess_p50_s": inproc_p50, "proxy_p50_s": proxy_p50,
               "batching_speedup_at_%d" % top: speedup, "proxy_overhead": overhead,
               "seconds": time.perf_counter() - t_start}
    print(f"\nthroughput at concurrency {top}: batching on / off = {speedup:.2f}x  (target >= 3x)")
    print(f"proxy overhead, one request at a time: p50 {proxy_p50 * 1000:.1f} ms vs in-process {inproc_p50 * 1000:.1f} ms "
          f"= {overhead * 100:+.1f}%  (target < 5%)")
    if args.plot:
        plot(results, args.plot, speedup, overhead)
        print(f"plot: {args.plot}")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def plot(results: dict, path: str, speedup: float, overhead: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("on", "-o"), ("off", "--s")):
        cs = sorted(results[mode])
        a.plot(cs, [results[mode][c]["rps"] for c in cs], style, label=f"batching {mode}")
        b.plot(cs, [results[mode][c]["p50"] * 1000 for c in cs], style, label=f"p50, batching {mode}")
        b.plot(cs, [results[mode][c]["p95"] * 1000 for c in cs], style, alpha=0.4, label=f"p95, batching {mode}")
    a.set(xlabel="concurrent clients", ylabel="requests / s", title=f"throughput ({speedup:.1f}x at top)",
          xscale="log", xticks=sorted(results["on"]))
    a.set_xticklabels([str(c) for c in sorted(results["on"])])
    b.set(xlabel="concurrent clients", ylabel="latency (ms)", title=f"latency (proxy overhead {overhead * 100:+.1f}%)",
          xscale="log", xticks=sorted(results["on"]))
    b.set_xticklabels([str(c) for c in sorted(results["on"])])
    a.legend(), b.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
