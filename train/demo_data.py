"""The demo corrector's rows: the training rows of every stage and the held-out sets it is measured on.

Every file is drawn from a seed and written once under ``WORK/data``: a resumed run, or one
extended by a further stage, reads what the first stages wrote (the word lists too), so it trains
and measures on exactly the rows a single run would.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aligner.train.demo_recipe import HELDOUT_DIR, MIX, STAGES, WILD_VARIANTS


def sentence_pools(hh_path: Path | None) -> tuple[list[str], list[str], str]:
    """(train pool, held-out pool, description): real sentences split by hash, or the built-in pool."""
    from aligner.data.synthetic import FALLBACK_SENTENCES, sentences_from_hh_rlhf, split_sentences

    if hh_path and hh_path.is_file():
        train, held = split_sentences(sentences_from_hh_rlhf(hh_path), 0.2)
        return train, held, f"{hh_path.name} ({len(train)} train / {len(held)} held-out sentences)"
    print(f"warning: {hh_path} not found; using the generator's built-in sentence pool", file=sys.stderr)
    train, held = split_sentences(FALLBACK_SENTENCES, 0.2)
    return train, held, "built-in pool"


def words(work: Path, hh_path: Path | None) -> list[str]:
    """The copy curriculum's vocabulary: every word of the HH-RLHF sample plus the system word list
    where one is installed (``wamerican``). Written once to ``data/words.txt`` so that a resumed or
    extended run draws from the very list the first stages used."""
    from aligner.data.synthetic import FALLBACK_SENTENCES, texts_from_hh_rlhf, word_list

    path = work / "data" / "words.txt"
    if path.is_file():
        return path.read_text().split()
    texts = texts_from_hh_rlhf(hh_path) if hh_path and hh_path.is_file() else list(FALLBACK_SENTENCES)
    vocab = word_list(texts, system=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(vocab) + "\n")
    return vocab


def frequency_words(work: Path) -> list[str]:
    """The rare-word vocabulary of the wild rows: wordfreq's 60,000 most frequent English words
    (minus blocklisted ones). Written once to ``data/freq_words.txt`` (with the library versions in
    ``data/libraries.json``) so a resumed or extended run draws from the very list the first used."""
    from aligner.data.synthetic import word_list
    from aligner.data.synthetic.wild import library_versions

    path = work / "data" / "freq_words.txt"
    if path.is_file():
        return path.read_text().split()
    try:
        import wordfreq
    except ImportError as exc:
        raise SystemExit("the wild rows (stage 15 on) need the synth extra: pip install 'aligner-kit[synth]'") from exc
    vocab = word_list([" ".join(wordfreq.top_n_list("en", 60000))], system=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(vocab) + "\n")
    (work / "data" / "libraries.json").write_text(json.dumps(library_versions(), indent=1) + "\n")
    return vocab


def uses_wild(variants: dict[str, dict[str, float]] | None) -> bool:
    return any(w.get(v, 0) > 0 for w in (variants or {}).values() for v in WILD_VARIANTS)


def heldout_rows(name: str) -> list[dict[str, str]]:
    """A hand-written held-out file of ``train/heldout`` (never used for training), as dicts."""
    return [json.loads(line) for line in (HELDOUT_DIR / name).read_text().splitlines() if line.strip()]


def build_eval(work: Path, hh_path: Path | None, seed: int = 1) -> dict[str, Path]:
    """The evaluation files: eval loss, held-out synthetic (another seed), and the user-facing sets on
    text the generator never produced — held-out HH-RLHF sentences with and without spliced contacts,
    the hand-written fine answers, and contacts spliced into those."""
    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate, splice_contacts

    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    train_pool, held_pool, _ = sentence_pools(hh_path)
    files = {k: d / f"{k}.jsonl" for k in ("eval_loss", "eval_synthetic", "eval_splice", "eval_hand_fine",
                                           "eval_hand_splice")}
    vocab = words(work, hh_path)
    write_jsonl([r.to_dict() for r in generate(256, seed=seed + 100, mix=MIX, sentences=train_pool, words=vocab)],
                files["eval_loss"])
    write_jsonl([r.to_dict() for r in generate(400, seed=seed + 1000, sentences=train_pool, words=vocab)],
                files["eval_synthetic"])
    write_jsonl([r.to_dict() for r in splice_contacts(held_pool, seed=seed + 2000, n=200)], files["eval_splice"])
    hand = heldout_rows("fine_answers.jsonl")
    write_jsonl([{"question": r["question"], "answer": r["answer"], "correction": r["answer"], "category": "identity"}
                 for r in hand], files["eval_hand_fine"])
    spliced = [r for r in splice_contacts([r["answer"] for r in hand], seed=seed + 3000, n=120)
               if r.category == "redact"]
    write_jsonl([r.to_dict() for r in spliced], files["eval_hand_splice"])
    return files


def build_data(work: Path, n: int, hh_path: Path | None, seed: int = 1, later: dict[int, int] | None = None
               ) -> dict[str, Any]:
    """Write train / eval-loss / eval-synthetic / eval-splice JSONL files under ``work/data``.

    Stage 2 gets its own rows (another seed) so the second pass sees new answers, not repeats.
    The held-out synthetic set uses yet another seed and an equal share per category; the splice
    set is built from sentences the generator never used (hash split of the HH-RLHF pool).
    """
    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate

    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    train_pool, held_pool, desc = sentence_pools(hh_path)
    files = {"train": d / "train.jsonl", **build_eval(work, hh_path, seed)}
    vocab = words(work, hh_path)
    write_jsonl([r.to_dict() for r in generate(n, seed=seed, mix=STAGES[1]["mix"], sentences=train_pool, words=vocab,
                                               variants=STAGES[1]["variants"])], files["train"])
    for stage, rows in sorted((later or {}).items()):  # stage → rows; each stage its own seed
        files[f"train{stage}"] = stage_data(work, stage, rows, train_pool, seed, overwrite=True)
    info = {"n_train": n, "n_train_later_stages": later or {}, "seed": seed, "mix": MIX, "sentences": desc,
            "words": len(vocab), "files": {k: str(v) for k, v in files.items()}}
    (d / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def stage_data(work: Path, stage: int, rows: int, train_pool: list[str], seed: int = 1, *,
               overwrite: bool = False) -> Path:
    """Fresh rows for a later stage (its own seed, its own mix); kept if already written, so a resumed
    run — or one extended by a further stage — trains on exactly the rows a single run would."""
    from aligner.data import write_jsonl
    from aligner.data.synthetic import generate

    path = work / "data" / STAGES[stage]["data"]
    if overwrite or not path.is_file():
        vocab = words(work, None)  # written by build_data (or by --start-from) before any stage
        extra = {"freq_words": frequency_words(work)} if uses_wild(STAGES[stage]["variants"]) else {}
        write_jsonl([r.to_dict() for r in generate(rows, seed=seed + stage, mix=STAGES[stage]["mix"],
                                                    sentences=train_pool, words=vocab,
                                                    variants=STAGES[stage]["variants"], **extra,
                                                    questions=STAGES[stage]["questions"])], path)
    return path
