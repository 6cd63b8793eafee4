"""A corrector as a GGUF file: the metadata keys the converter writes and the backend reads.

A GGUF file carries llama.cpp's own keys (architecture, tokenizer, ...) and free-form ones; a
corrector's are under ``aligner.``, the counterpart of ``aligner_config.json`` in a checkpoint
directory (:mod:`aligner.correctors.checkpoint`):

``aligner.format``                   1: this file is a corrector written by ``aligner to-gguf``
``aligner.template``                 the template's name (``aligner-v1.0``)
``aligner.template.text``            its exact text, so a custom template travels with the file
``aligner.template.response_marker`` where the correction starts in a full decoded sequence
``aligner.config``                   the whole ``aligner_config.json`` as JSON (question format,
                                     guard settings, training record: whatever the checkpoint holds)
``aligner.source``, ``aligner.type`` what was converted, and to which type

Reading a file that will not load says why (not GGUF at all, cut short, ...) with the ``gguf``
package's reader, the same package that wrote it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..contracts.errors import ConfigError, CorrectorError, hide_cause
from ..contracts.templates import Template, get_template, names

FORMAT_VERSION = 1
PREFIX = "aligner."
KEY_FORMAT, KEY_TEMPLATE = "aligner.format", "aligner.template"
KEY_TEXT, KEY_MARKER = "aligner.template.text", "aligner.template.response_marker"
KEY_CONFIG, KEY_SOURCE, KEY_TYPE = "aligner.config", "aligner.source", "aligner.type"
MAGIC = b"GGUF"


def corrector_metadata(config: Mapping[str, Any], template: Template, *, source: str,
                       gguf_type: str) -> dict[str, Any]:
    """The ``aligner.*`` keys of a converted corrector (str values, ``aligner.format`` an int)."""
    return {KEY_FORMAT: FORMAT_VERSION, KEY_TEMPLATE: template.name, KEY_TEXT: template.text,
            KEY_MARKER: template.response_marker, KEY_CONFIG: json.dumps(dict(config), ensure_ascii=False),
            KEY_SOURCE: source, KEY_TYPE: gguf_type}


def template_of(meta: Mapping[str, str]) -> Template | None:
    """The template a file records (its own text wins over a registered template of that name,
    which may have changed since), or None for a file without one."""
    name, text = meta.get(KEY_TEMPLATE), meta.get(KEY_TEXT)
    if not name and not text:
        return None
    if not text:
        return get_template(name)
    if name in names() and get_template(name).text == text:
        return get_template(name)
    return Template(name or "custom", text, response_marker=meta.get(KEY_MARKER, "ASSISTANT:"),
                    description="recorded in the GGUF file")


def config_of(meta: Mapping[str, str]) -> dict[str, Any]:
    """The checkpoint's ``aligner_config.json`` as the file carries it ({} when absent or unreadable)."""
    try:
        value = json.loads(meta.get(KEY_CONFIG) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def check_file(path: "str | os.PathLike[str]") -> Path:
    """``path`` exists and starts like a GGUF file (clear errors before llama.cpp is asked)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"no such GGUF file: {path}.", field="corrector",
                          fix="pass the path of a .gguf file (e.g. from `aligner to-gguf`).")
    with p.open("rb") as fh:
        head = fh.read(4)
    if head != MAGIC:
        raise ConfigError(f"{path} is not a GGUF file (it starts with {head!r}, not {MAGIC!r}).", field="corrector",
                          fix="convert the corrector with `aligner to-gguf CORRECTOR OUT.gguf`.")
    return p


def read_fields(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """Every key-value of a GGUF file (arrays as lists), with the ``gguf`` package's reader."""
    reader = _reader(Path(path))
    return {name: field.contents() for name, field in reader.fields.items()}


def _reader(path: Path) -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise hide_cause(ConfigError("the gguf package is not installed.", field="corrector",
                                     fix="pip install 'aligner-kit[gguf]'."), exc)
    try:
        return gguf.GGUFReader(path)
    except Exception as exc:  # a cut-short header fails anywhere inside the reader
        raise hide_cause(CorrectorError(
            f"{path} is not a complete GGUF file: the gguf reader stops at {type(exc).__name__}: {exc} "
            "(a file cut short while being written or copied reads so).", field="corrector",
            fix="convert or copy it again (`aligner to-gguf CORRECTOR OUT.gguf`)."), exc)


def diagnose(path: "str | os.PathLike[str]") -> str:
    """Why llama.cpp could not load ``path``, as far as the file itself shows: a header that does
    not parse or tensor data past the end of the file (truncated); else ''."""
    p = Path(path)
    try:
        reader = _reader(p)
    except CorrectorError as exc:
        return str(exc).split(" Fix:")[0].split("is not a complete GGUF file: ", 1)[-1]
    size = p.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        return (f"it is truncated: its tensors need {end:,} bytes, the file has {size:,}; "
                "it was probably cut short while being written or copied")
    return ""
