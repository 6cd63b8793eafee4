"""Tiny models whose behaviour does not depend on where the tests run.

``conftest.corpus_texts`` trains the shared fixtures' tokenizers on real HH-RLHF rows when
``../shared/data`` is there and on two sentences when it is not, so what those models write (and
whether it loops) differs between a full checkout and a plain clone. The tests that need a model to
behave a given way — loop, never stop, write varied text — build it here, from the rows the project
ships in ``tests/data`` only, so the same model comes out everywhere.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from hh_data import SAMPLE


def fixed_corpus() -> list[str]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [text for row in rows for text in (row["chosen"], row["rejected"])]


def fixed_tiny(path: "str | Path", kind: str = "causal", *, never_stops: bool = False,
               whole_characters: bool = False, **model_kw: Any) -> Path:
    """A tiny corrector (template aligner-v1.0) trained on nothing, with a tokenizer from
    ``fixed_corpus``. ``init_scale=1`` loops on one token; ~10 writes varied text.
    ``never_stops`` suppresses EOS in its generation config; ``whole_characters`` every token that
    is a lone byte of a multi-byte character (decoded alone, U+FFFD), so its varied text is text:
    the guard rejects a correction with replacement characters (both decode through transformers'
    ``generate``, which applies ``suppress_tokens``)."""
    from aligner.train.tiny import build_model, train_tokenizer
    from aligner.correctors.checkpoint import save_corrector

    tok = train_tokenizer(fixed_corpus(), vocab_size=512)
    model = build_model(tok, kind, **model_kw)
    suppress = [tok.eos_token_id] if never_stops else []
    if whole_characters:
        suppress += [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
    if suppress:
        model.generation_config.suppress_tokens = suppress
    return save_corrector(model, tok, path, template="aligner-v1.0")
