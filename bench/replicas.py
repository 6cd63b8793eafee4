"""Benchmark several ``aligner serve`` replicas sharing one PostgreSQL corrections log.

Real ``aligner serve`` processes, a real PostgreSQL server (Debian's binaries, started here in a
temporary folder), a real OpenAI-protocol upstream on 127.0.0.1 that answers after a fixed delay
(as a remote API does), the client alternating between replicas as a round-robin balancer would.
Three set-ups, measured in this same run on this same machine:

* ``1 replica``               no corrections log
* ``1 replica + log``         ``--log-corrections postgresql://…``
* ``2 replicas + shared log`` both writing to the same database

Printed (and plotted): requests/s and p50/p95 latency of each, the ratios ``log ÷ no log`` (the
log's cost) and ``2 replicas ÷ 1`` (how far a second replica scales on this machine), and checks:
the log holds exactly one row per answered request, and the replicas' ``/metrics`` add up to the
requests sent. Each replica decodes on ``--threads`` CPU threads: on a machine with fewer free
cores than replicas × threads the second replica has nothing to run on, and the ratio says so.

    python bench/replicas.py                        # tiny model, ~5 min on 2 cores
    python bench/replicas.py --corrector aligner/assets/demo-corrector --requests 64
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' PostgreSQL launcher, OpenAI-protocol upstream, server starter
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "bench-model"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def load(urls: list[str], n: int, concurrency: int, max_tokens: int) -> dict:
    """``n`` requests from ``concurrency`` clients, request i to ``urls[i % len(urls)]``."""
    import httpx

    latencies: list[float] = []
    ids: list[str] = []
    todo = list(range(n))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def worker() -> None:
            while todo:
                i = todo.pop(0)
                t0 = time.perf_counter()
                r = await client.post(urls[i % len(urls)] + "/v1/chat/completions", json={
                    "model": MODEL, "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": f"Question {i}: how do I keep my bike in good shape?"}]})
                r.raise_for_status()
                latencies.append(time.perf_counter() - t0)
                ids.append(r.json()["aligner"]["id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"rps": n / wall, "p50": pct(latencies, 50), "p95": pct(latencies, 95), "n": n, "ids": ids}


def metrics_sum(urls: list[str], name: str, **labels: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out = 0.0
    for u in urls:
        for fam in text_string_to_metric_families(httpx.get(u + "/metrics", timeout=30).text):
            out += sum(s.value for s in fam.samples
                       if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corrector", help="corrector path (default: a tiny random model built now)")
    ap.add_argument("--requests", type=int, default=96, help="requests per set-up (default: 96)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--upstream-ms", type=float, default=100.0, help="the upstream's answer delay (default: 100)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per replica (default: 1)")
    ap.add_argument("--plot", default="docs/production-replicas.png", help="PNG to write ('' to skip)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)

    from fake_openai import FakeOpenAI
    from fixtures_postgres import PostgresServer
    from processes import aligner_serve

    from aligner.runtime.logs import read_log

    sys.path.insert(0, str(REPO / "bench"))
    from serve import tiny_corrector  # the same tiny model bench/serve.py measures

    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        corrector = args.corrector or tiny_corrector(Path(tmp))
        pg = PostgresServer().start()
        stack.callback(pg.stop)
        delay = args.upstream_ms / 1000

        def slow_answer(req: dict) -> str:
            time.sleep(delay)
            return "Clean the chain every week, check the tyre pressure and the brakes every month."

        upstream = stack.enter_context(FakeOpenAI(responder=slow_answer))
        common = ["--upstream", upstream.base_url, "--upstream-model", MODEL, "--corrector", corrector,
                  "--max-new-tokens", str(args.max_new_tokens), "--max-batch-size", "16"]
        setups = {"1 replica": (1, False), "1 replica + log": (1, True), "2 replicas + shared log": (2, True)}
        threads = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
                   "TOKENIZERS_PARALLELISM": "false"}
        for name, (n_replicas, logged) in setups.items():
            db = pg.new_database() if logged else None
            with aligner_serve(*common, *(["--log-corrections", db] if db else []), replicas=n_replicas,
                               env=threads) as started:
                urls = [url for url, _ in started]
                asyncio.run(load(urls, 2 * n_replicas, 2, args.max_new_tokens))  # warm-up, one per replica
                res = asyncio.run(load(urls, args.requests, args.concurrency, args.max_new_tokens))
                sent = args.requests + 2 * n_replicas
                res["metrics_requests_200"] = metrics_sum(urls, "aligner_requests_total",
                                                          route="/v1/chat/completions", status="200")
                res["sent"] = sent
                if db:
                    deadline = time.monotonic() + 60
                    while metrics_sum(urls, "aligner_log_pending_rows") and time.monotonic() < deadline:
                        time.sleep(0.2)
                    rows = [r["id"] for r in read_log(db)]
                    res["rows"], res["rows_unique"] = len(rows), len(set(rows))
                    res["every_answer_one_row"] = sorted(set(res["ids"]) & set(rows)) == sorted(res["ids"]) and \
                        len(rows) == sent
                    res["replicas_in_log"] = len({r["replica"] for r in read_log(db)})
            del res["ids"]
            results[name] = res
            print(f"{name:24s}: {res['rps']:6.1f} req/s  p50 {res['p50'] * 1000:7.1f} ms  p95 {res['p95'] * 1000:7.1f} ms"
                  + (f"  rows {res['rows']}/{sent}" if "rows" in res else ""), file=sys.stderr)

    base, logged, two = (results[k] for k in setups)
    summary = {"corrector": args.corrector or "tiny random Llama (bench/serve.py)", "requests": args.requests,
               "concurrency": args.concurrency, "max_new_tokens": args.max_new_tokens,
               "upstream_ms": args.upstream_ms, "threads_per_replica": args.threads, "cpus": os.cpu_count(),
               "results": results, "log_cost": logged["rps"] / base["rps"], "two_replicas_speedup": two["rps"] / logged["rps"],
               "seconds": time.perf_counter() - t_start}
    print(f"\nthroughput with the PostgreSQL log / without: {summary['log_cost']:.2f}x")
    print(f"throughput, 2 replicas sharing the log / 1 replica with it: {summary['two_replicas_speedup']:.2f}x "
          f"({os.cpu_count()} CPUs, {args.threads} thread(s) per replica)")
    ok = all(r.get("every_answer_one_row", True) and r["metrics_requests_200"] == r["sent"] for r in results.values())
    print("checks: every answered request has one row; /metrics of the replicas add up to the requests sent: "
          + ("yes" if ok else "NO"))
    if args.plot:
        plot(results, args.plot, summary)
        print(f"plot: {args.plot}")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0 if ok else 1


def plot(results: dict, path: str, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(names, [results[k]["rps"] for k in names], color=["#999", "#69c", "#36a"])
    a.set(ylabel="requests / s", title=f"throughput (concurrency {summary['concurrency']})")
    x = range(len(names))
    b.bar([i - 0.2 for i in x], [results[k]["p50"] * 1000 for k in names], 0.4, label="p50")
    b.bar([i + 0.2 for i in x], [results[k]["p95"] * 1000 for k in names], 0.4, label="p95")
    b.set(ylabel="latency (ms)", title="latency", xticks=list(x))
    b.set_xticklabels(names)
    b.legend()
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"aligner serve replicas sharing a PostgreSQL log ({summary['cpus']} CPUs, "
                 f"{summary['threads_per_replica']} thread/replica)", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
