"""Data preparation for corrector SFT: Q-A-C rows in, tokenised examples (and their phases) out.

Why the examples are tokenised here rather than by trl: the prompt is tokenised *alone*, exactly as
the corrector tokenises it at inference (``add_special_tokens=True``), and the completion
(``" " + correction`` + EOS) is appended as separate ids. Joint tokenisation could merge tokens
across the boundary and train the model on a context it never sees when correcting. The labels
are ``-100`` on every prompt token, so the loss is on the correction and EOS only.

Identity warm-up: the training stream is one ordered sequence — first the Q-A-A rows (correction =
answer) built from ``identity_warmup`` of the data, then the Q-A-C epochs — read by a sequential
sampler (see :func:`plan_phases` and :func:`step_boundaries`).
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from aligner.contracts.errors import ConfigError, DataError
from aligner.runtime.hub import DATA_SUFFIXES, looks_like_path
from aligner.train.config import CorrectorTrainConfig

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One tokenised training example and the phase it belongs to (``identity`` or ``qac``)."""

    input_ids: list[int]
    labels: list[int]
    phase: str
    decoder: bool = False  # encoder-decoder: ``labels`` is the whole target, ``input_ids`` the prompt


def load_rows(path: str, config: CorrectorTrainConfig, what: str = "data") -> list[Any]:
    """Q-A-C rows via :func:`aligner.data.load` (its validation: file, row and field named)."""
    from aligner import data as adata

    if not Path(path).exists() and looks_like_path(path, suffixes=DATA_SUFFIXES):
        raise ConfigError(f"no such file {path!r}.", field=what, fix=f"pass an existing file to --{what.replace('_', '-')}.")
    result = adata.load(path, format=config.data_format, lenient=config.lenient)
    if result.skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.skip_reasons().items())
        log.warning("%s: skipped %d rows (%s)", path, len(result.skipped), reasons)
        print(f"{what}: skipped {len(result.skipped)} malformed rows ({reasons})")
    rows = list(result.rows)
    if not rows:
        raise DataError("no usable rows (all were skipped).", source=str(path),
                        fix="check the file's format (--data-format) or fix the rows listed above.")
    for r in rows:
        if not isinstance(getattr(r, "correction", None), str) or not r.correction.strip():
            raise DataError("the row has no correction.", source=str(path), row=getattr(r, "row", None),
                            field="correction", fix="every training row needs a non-empty 'correction'.")
    return rows


def hold_out(rows: list[Any], config: Any, eval_rows: list[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """The training rows and the eval rows, alike for every trainer: ``eval_rows`` when the user
    gave them (an eval file or split), else a seeded ``eval_fraction`` of ``rows`` (the same split
    on every rank and every resume); ``limit`` then caps the training rows."""
    if eval_rows is None and config.eval_fraction > 0:
        shuffled = list(rows)
        random.Random(f"{config.seed}:split").shuffle(shuffled)
        k = max(1, round(len(rows) * config.eval_fraction))
        eval_rows, rows = shuffled[:k], shuffled[k:]
    if config.limit:
        rows = rows[: config.limit]
    return rows, eval_rows or []


def plan_phases(rows: Sequence[Any], config: CorrectorTrainConfig) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The ordered training stream as ``[(phase, [(question, answer, target), ...]), ...]``.

    Identity warm-up (paper: ~20% of the data): a share of the rows with the *answer* as target
    ("copy what is already fine"), before the Q-A-C epochs. Each epoch is shuffled separately, with
    the seed, so the stream — and therefore resuming in the middle of it — is reproducible.
    """
    rng = random.Random(config.seed)
    phases: list[tuple[str, list[tuple[str, str, str]]]] = []
    if config.identity_warmup > 0:
        k = max(1, round(len(rows) * config.identity_warmup))
        picked = rng.sample(list(rows), k)
        stream: list[tuple[str, str, str]] = []
        for e in range(max(1, math.ceil(config.warmup_epochs))):
            part = [(r.question, r.answer, r.answer) for r in picked]
            random.Random(f"{config.seed}:identity:{e}").shuffle(part)
            if e + 1 > config.warmup_epochs:  # fractional last epoch
                part = part[: max(1, round(len(part) * (config.warmup_epochs - e)))]
            stream += part
        phases.append(("identity", stream))
    stream = []
    epochs = config.epochs if config.epochs > 0 else 1.0
    for e in range(max(1, math.ceil(epochs))):
        part = [(r.question, r.answer, r.correction) for r in rows]
        random.Random(f"{config.seed}:qac:{e}").shuffle(part)
        if e + 1 > epochs:
            part = part[: max(1, round(len(part) * (epochs - e)))]
        stream += part
    phases.append(("qac", stream))
    return phases


def tokenize_example(tokenizer: Any, template: Any, question: str, answer: str, target: str, *,
                     max_length: int, encoder_decoder: bool = False, phase: str = "qac") -> Example | None:
    """Prompt ids (masked) + completion ids (``" " + target`` + EOS, trained on).

    Raises ``ConfigError(field="max_length")`` when the prompt alone leaves no room for a single
    correction token; returns ``None`` (the caller counts it) when only the correction is cut.
    """
    prompt = template.render(question, answer, aspects="harmlessness, helpfulness")
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if encoder_decoder:
        if len(prompt_ids) > max_length:
            raise _too_long(len(prompt_ids), max_length)
        return Example(prompt_ids, target_ids[:max_length], phase, decoder=True)
    if len(prompt_ids) + 1 > max_length:
        raise _too_long(len(prompt_ids), max_length)
    ids = prompt_ids + target_ids
    if len(ids) > max_length:
        return None
    return Example(ids, [-100] * len(prompt_ids) + target_ids, phase)


def _too_long(n: int, max_length: int) -> ConfigError:
    return ConfigError(f"a prompt is {n} tokens long, but max_length is {max_length}: no room is left for the "
                       "correction.", field="max_length",
                       fix=f"raise --max-length above {n + 1} (paper: 2048) or drop over-long rows from the data.")


def _group_by_length(examples: list[Example], batch: int, seed: int) -> list[Example]:
    """Reorder one phase so that consecutive ``batch`` examples have similar lengths (less padding).

    Sort within windows of 64 batches, cut into batches, shuffle the batches: the sequential
    sampler then yields homogeneous batches without mixing phases.
    """
    rng = random.Random(f"{seed}:group")
    out: list[Example] = []
    window = batch * 64
    for start in range(0, len(examples), window):
        chunk = sorted(examples[start:start + window], key=lambda e: len(e.input_ids))
        batches = [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
        rng.shuffle(batches)
        out += [e for b in batches for e in b]
    return out


def build_examples(phases: Sequence[tuple[str, Sequence[tuple[str, str, str]]]], tokenizer: Any, template: Any,
                   config: CorrectorTrainConfig, *, encoder_decoder: bool = False,
                   group_batch: int | None = None) -> tuple[list[Example], int]:
    """Tokenise the stream; returns (examples, number dropped because the correction did not fit)."""
    out: list[Example] = []
    dropped = 0
    cache: dict[tuple[str, str, str], Example | None] = {}
    for phase, items in phases:
        part = []
        for q, a, t in items:
            key = (q, a, t)
            if key not in cache:
                cache[key] = tokenize_example(tokenizer, template, q, a, t, max_length=config.max_length,
                                              encoder_decoder=encoder_decoder, phase=phase)
            ex = cache[key]
            if ex is None:
                dropped += 1
                continue
            part.append(Example(ex.input_ids, ex.labels, phase, ex.decoder))
        if group_batch and group_batch > 1:
            part = _group_by_length(part, group_batch, config.seed)
        out += part
    if not out:
        raise ConfigError("every example is longer than max_length.", field="max_length",
                          fix="raise --max-length (paper: 2048).")
    return out, dropped


def step_boundaries(phases: Sequence[tuple[str, Sequence[Any]]], examples: Sequence[Example],
                    per_step: int) -> list[dict[str, Any]]:
    """Where each phase starts and ends in optimizer steps (``per_step`` = batch × processes ×
    accumulation examples), so the loss curve and ``train_state.json`` can say which phase a step was in."""
    boundaries: list[dict[str, Any]] = []
    first = 0
    for name in [p for p, _ in phases]:
        n = sum(1 for e in examples if e.phase == name)
        if not n:
            continue
        start = first
        first += n
        boundaries.append({"phase": name, "examples": n, "first_step": start // per_step + 1,
                           "last_step": max(start // per_step + 1, math.ceil(first / per_step))})
    return boundaries


def to_dataset(examples: Sequence[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                              "labels": [e.labels for e in examples]})
