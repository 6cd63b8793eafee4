"""The corrector checkpoint format: a transformers model directory plus ``aligner_config.json``.

Whatever writes a corrector (the trainer, the demo rebuild, the tests' tiny models) and whatever
reads one (:class:`~aligner.correctors.local.LocalCorrector`) agree here on the file name and keys:
``template`` (the prompt template the corrector was trained with) and any extra keys a trainer
records (``method``, ``base_model``, ...).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..contracts.errors import CorrectorError

ALIGNER_CONFIG = "aligner_config.json"


def read_aligner_config(path: "str | Path") -> dict[str, Any]:
    """The ``aligner_config.json`` a trained corrector carries (its template name), or {}."""
    p = Path(str(path)) / ALIGNER_CONFIG
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise CorrectorError(f"{p} is not valid JSON ({exc}).", field="corrector",
                                 fix="fix or delete the file.") from exc
    return {}


def save_corrector(model: Any, tokenizer: Any, path: "str | Path", *, template: str | None = None,
                   **extra: Any) -> Path:
    """Save a model as a corrector directory; ``aligner_config.json`` records its template.

    transformers writes the loading flags the tokenizer was given (``is_local``,
    ``local_files_only``) into ``tokenizer_config.json``; they describe the machine that trained
    the corrector, not the corrector, so they are dropped from what is saved.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    tok_cfg_file = path / "tokenizer_config.json"
    if tok_cfg_file.is_file():
        tok_cfg = json.loads(tok_cfg_file.read_text())
        flags = {"is_local", "local_files_only"} & tok_cfg.keys()
        if flags:
            for key in flags:
                del tok_cfg[key]
            tok_cfg_file.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    if template is not None or extra:
        meta = {"template": template, **extra}
        (path / ALIGNER_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return path
