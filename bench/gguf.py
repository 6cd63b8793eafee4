"""PyTorch against llama.cpp (GGUF) on the same corrections, side by side in one run (issue 27).

The corrector, the pairs, the bandwidth measure and the roofline are ``bench/correct_speed.py``'s:
the ~30M Llama grown from the demo corrector (cached under ``--cache``), held-out Q-A-C pairs whose
corrections copy most of the answer, one thread. The corrector is converted with ``aligner
to-gguf`` to each type (f32, f16, q8_0, q4_k_m; cached beside it) and every setting corrects the
same prompts at batch 1:

  PyTorch fp32  transformers greedy, transformers prompt lookup (10), the project's greedy loop,
                the loop with copy drafts (the project's best at batch 1)
  GGUF, each    greedy, the project's copy drafts, llama.cpp's prompt lookup (10)

Reported per setting: tokens/s (generated tokens ÷ wall time, prefill included; best of the
interleaved repeats), the batch-1 roofline fraction (tokens/s ÷ (read bandwidth ÷ bytes of the
weights as run)), file size, and per type the share of corrections identical to PyTorch fp32's
on all the pairs. ``--serve`` adds concurrent corrections through one corrector with 1 and 2
llama.cpp contexts (what ``ALIGNER_GGUF_CONTEXTS`` buys ``aligner serve``). Ends with the target
ratios and one JSON line; the plot goes to ``--out``.

    nice -n 10 python bench/gguf.py [--quick] [--serve] [--out runs/gguf]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
# this file is named gguf.py: its folder, which Python puts first on sys.path, would shadow the gguf package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))


def _bench_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cs = _bench_module("correct_speed")  # the benchmark corrector, pairs, bandwidth and timing
grow_demo, held_out_pairs, llc_bytes = _cs.grow_demo, _cs.held_out_pairs, _cs.llc_bytes
read_bandwidth, timed, weight_bytes = _cs.read_bandwidth, _cs.timed, _cs.weight_bytes

TYPES = ("f32", "f16", "q8_0", "q4_k_m")
TARGETS = {"f32_identical": 0.98, "q8_0_greedy_vs_torch_greedy": 2.0, "best_gguf_vs_best_torch": 1.5}


class Rows:
    """A GGUF corrector behind ``LocalGenerator.generate``'s signature, so ``timed`` measures both."""

    def __init__(self, corrector):
        self.corrector = corrector

    def generate(self, prompts, decoding, rows=None):
        from aligner.contracts.rows import RowControl

        return self.corrector.generate_rows(prompts, decoding, rows or [RowControl() for _ in prompts])


def gguf_weight_bytes(path: Path) -> int:
    """Bytes of the tensors a decoding step reads (the file's tensor data; embeddings tied)."""
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def convert_all(src: Path, cache: Path, types: tuple[str, ...]) -> dict[str, Path]:
    from aligner.gguf import to_gguf

    out = {}
    for kind in types:
        path = cache / f"{src.name}-{kind}.gguf"
        if not path.is_file():
            to_gguf(src, path, type=kind)
        out[kind] = path
    return out


def concurrent_throughput(path: Path, prompts: list[str], decoding, contexts: int, clients: int) -> float:
    """Tokens/s of ``clients`` threads correcting ``prompts`` between them through one corrector."""
    from aligner.correctors.llamacpp import GGUFCorrector
    from aligner.contracts.rows import RowControl

    corr = GGUFCorrector(str(path), threads=1, contexts=contexts)
    corr.generate([prompts[0]], decoding)  # warm-up
    todo = list(range(len(prompts)))
    lock = threading.Lock()
    tokens = [0]

    def client():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            row = RowControl()
            corr.generate_rows([prompts[i]], decoding, [row])
            with lock:
                tokens[0] += row.steps

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    speed = tokens[0] / (time.perf_counter() - t0)
    corr.close()
    return speed


def main() -> None:
    import torch

    from aligner.correctors import load_corrector
    from aligner.correctors.llamacpp import GGUFCorrector
    from aligner.contracts.decoding import DecodingConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs and repeats")
    ap.add_argument("--cache", default="/tmp/aligner-bench", help="where the grown corrector and its GGUF files are kept")
    ap.add_argument("--train-steps", type=int, default=2, help="as in bench/correct_speed.py")
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated GGUF types")
    ap.add_argument("--serve", action="store_true", help="also measure concurrent corrections with 1 and 2 contexts")
    ap.add_argument("--out", default="runs/gguf", help="folder for the plot and results.json")
    ap.add_argument("--plot", default=None, help="also save the plot here (e.g. docs/gguf-speed.png)")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    types = tuple(t for t in args.types.split(",") if t)
    load1 = os.getloadavg()[0]
    t_start = time.perf_counter()
    src = grow_demo(Path(args.cache), args.train_steps, 1)
    files = convert_all(src, Path(args.cache), types)
    torch_corr = load_corrector(str(src), device="cpu")
    n_all, n1, reps = (24, 4, 2) if args.quick else (48, 12, 3)
    rows = held_out_pairs(n_all)
    prompts = [torch_corr.render(r.question, r.answer) for r in rows]
    base = {"max_new_tokens": args.max_new_tokens, "fallback": False}
    dec = {name: DecodingConfig.from_any({**base, **kw}) for name, kw in {
        "hf": {"engine": "hf", "copy_draft": False}, "hf_lookup": {"engine": "hf", "prompt_lookup": 10},
        "loop": {"engine": "loop", "copy_draft": False}, "copy": {"engine": "loop", "copy_draft": True},
        "lookup": {"copy_draft": False, "prompt_lookup": 10}}.items()}
    wbytes = {"torch": weight_bytes(torch_corr.generator.model), **{k: gguf_weight_bytes(p) for k, p in files.items()}}
    gens = {"torch": torch_corr.generator}
    ggufs = {kind: GGUFCorrector(str(path), threads=1) for kind, path in files.items()}
    gens.update({kind: Rows(c) for kind, c in ggufs.items()})
    plan = [("torch", "hf"), ("torch", "hf_lookup"), ("torch", "loop"), ("torch", "copy")]
    plan += [(kind, name) for kind in ggufs for name in ("loop", "copy", "lookup")]
    label = {"hf": "greedy (transformers)", "hf_lookup": "prompt lookup (transformers)", "loop": "greedy",
             "copy": "copy drafts", "lookup": "prompt lookup (llama.cpp)"}
    for g in gens.values():  # warm-up
        g.generate(prompts[:1], dec["loop"])
    speed: dict[str, float] = {}
    texts: dict[str, list[str]] = {}
    print(f"corrector {src.name}: {sum(p.numel() for p in torch_corr.generator.model.parameters()) / 1e6:.1f}M "
          f"parameters; {n1} pairs at batch 1, {n_all} for agreement; 1 thread; load average {load1:.2f}", flush=True)
    for rep in range(reps):  # interleaved: a burst of load on a shared machine hits every setting alike
        for who, name in plan:
            key = f"{who}/{name}"
            s, texts[key] = timed(gens[who], prompts[:n1], dec[name], 1, 1)
            speed[key] = max(speed.get(key, 0.0), s)
        print(f"repeat {rep + 1}/{reps} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    ref = texts["torch/hf"]
    bw, _ = read_bandwidth(llc_bytes())
    sizes = {k: p.stat().st_size for k, p in files.items()}
    agree: dict[str, float] = {}
    # agreement with PyTorch fp32 on every pair: PyTorch's copy-draft loop is greedy's output
    # (bench/correct_speed.py checks it), GGUF's greedy too
    torch_all = timed(gens["torch"], prompts, dec["copy"], 1, 1)[1]
    for kind in ggufs:
        got = timed(gens[kind], prompts, dec["copy"], 1, 1)[1]
        agree[kind] = sum(a.strip() == b.strip() for a, b in zip(got, torch_all)) / len(prompts)
    print(f"\nread bandwidth {bw / 1e9:.1f} GB/s; batch-1 tokens/s (roofline fraction), same text as PyTorch greedy:")
    table = []
    for who, name in plan:
        key = f"{who}/{name}"
        roof = bw / wbytes[who]
        same = sum(a.strip() == b.strip() for a, b in zip(texts[key], ref)) / len(ref)
        table.append({"setting": key, "tokens_per_s": speed[key], "roofline_fraction": speed[key] / roof,
                      "same_as_torch_greedy_bs1": same})
        print(f"  {('PyTorch fp32' if who == 'torch' else 'GGUF ' + who):13s} {label[name]:30s} "
              f"{speed[key]:7.1f} tokens/s  ({speed[key] / roof:.2f} of {roof:.0f})  same {same:.0%}")
    print("\nper type: file size, weights read per step, corrections identical to PyTorch fp32 "
          f"(all {len(prompts)} pairs):")
    for kind in ggufs:
        print(f"  {kind:7s} {sizes[kind] / 2 ** 20:6.1f} MiB  {wbytes[kind] / 1e6:6.1f} MB  {agree[kind]:.1%}")
    print(f"  PyTorch fp32 weights {wbytes['torch'] / 1e6:.1f} MB")
    serve = {}
    if args.serve and "q8_0" in files:
        for contexts in (1, 2):
            serve[contexts] = concurrent_throughput(files["q8_0"], prompts[:n_all // 2], dec["copy"], contexts, 4)
            print(f"serve-like: 4 clients, q8_0 + copy drafts, {contexts} context(s) x 1 thread: "
                  f"{serve[contexts]:.1f} tokens/s")
    torch_best = max(speed[f"torch/{n}"] for n in ("hf", "hf_lookup", "loop", "copy"))
    gguf_best = max((speed[f"{k}/{n}"] for k in ggufs for n in ("loop", "copy", "lookup")), default=0.0)
    ratios = {}
    if "f32" in agree:
        ratios["f32_identical"] = agree["f32"]
    if "q8_0" in ggufs:
        ratios["q8_0_greedy_vs_torch_greedy"] = speed["q8_0/loop"] / speed["torch/hf"]
        ratios["q8_0_greedy_vs_torch_loop"] = speed["q8_0/loop"] / speed["torch/loop"]
    ratios["best_gguf_vs_best_torch"] = gguf_best / torch_best
    print()
    for k, v in ratios.items():
        target = TARGETS.get(k)
        verdict = f"(target {target}: {'met' if v >= target else 'missed'})" if target else "(reported)"
        print(f"{k:30s} {v:6.2f}  {verdict}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.6, 4.4))
        groups = ["PyTorch fp32", *[f"GGUF {k}" for k in ggufs]]
        series = [("greedy", ["torch/hf", *[f"{k}/loop" for k in ggufs]]),
                  ("project loop greedy / —", ["torch/loop", *[None for _ in ggufs]]),
                  ("copy drafts", ["torch/copy", *[f"{k}/copy" for k in ggufs]]),
                  ("prompt lookup", ["torch/hf_lookup", *[f"{k}/lookup" for k in ggufs]])]
        width = 0.2
        for j, (name, keys) in enumerate(series):
            xs = [i + (j - 1.5) * width for i, key in enumerate(keys) if key]
            ys = [speed[key] for key in keys if key]
            ax.bar(xs, ys, width, label=name if j != 1 else "greedy (project loop)")
        ax.set_xticks(range(len(groups)), [f"{g}\n{sizes[g.split()[1]] / 2 ** 20:.0f} MiB" if g != "PyTorch fp32"
                                           else f"{g}\n{wbytes['torch'] / 2 ** 20:.0f} MiB" for g in groups])
        ax.set_ylabel("generated tokens/s, batch 1, 1 thread")
        ax.set_title(f"~30M Llama corrector: PyTorch vs llama.cpp (load {load1:.1f})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "gguf_speed.png", dpi=110)
        if args.plot:
            fig.savefig(args.plot, dpi=110)
        print(f"plot: {out / 'gguf_speed.png'}")
    except ImportError:
        print("plot skipped: matplotlib is not installed")
    (out / "results.json").write_text(json.dumps({
        "table": table, "sizes": sizes, "weight_bytes": wbytes, "identical_to_fp32": agree, "bandwidth": bw,
        "serve_contexts": serve, "ratios": ratios, "load_average": [load1, os.getloadavg()[0]],
        "seconds": time.perf_counter() - t_start}, indent=2))
    print(f"load average at end {os.getloadavg()[0]:.2f}; {time.perf_counter() - t_start:.0f} s")
    print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))


if __name__ == "__main__":
    main()
