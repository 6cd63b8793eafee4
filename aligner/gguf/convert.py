"""``to_gguf``: a causal corrector (a directory or a hub id) to a GGUF file llama.cpp loads.

The tensors are written by llama.cpp's own converter (found by :mod:`aligner.gguf.source`, run by
:mod:`aligner.gguf._worker`) with the ``gguf`` package it ships with; ``q4_k_m``, which that
converter does not write, is made from an f32 conversion by llama.cpp's quantizer
(``llama_model_quantize``). Then the file is loaded back by llama.cpp and its tokenization of the
corpus (:mod:`aligner.gguf.corpus`) is compared once more with the corrector's own tokenizer,
BOS included, before it is moved to ``OUT`` — a file that would feed the model other ids than it
was trained on is never left there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..contracts.errors import ConfigError, CorrectorError, hide_cause
from ..contracts.templates import get_template
from ..correctors.gguf_format import corrector_metadata
from ..runtime.hub import looks_like_path
from .corpus import describe, first_mismatch, tokenizer_corpus

from . import GGUF_TYPES  # what llama.cpp's converter writes, and q4_k_m through its quantizer
_QUANTIZED = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}

SEQ2SEQ_FIX = ("convert a causal (decoder-only) corrector, e.g. a Llama, Qwen or Mistral one; keep this encoder-decoder "
               "corrector on the PyTorch backend (--corrector DIR) or behind a completions server "
               "(--corrector http://HOST/v1). llama.cpp itself can convert and run T5 models "
               "(convert_hf_to_gguf.py, llama-cli), but not through llama-cpp-python's decoding loop this backend uses.")


@dataclass
class GGUFExport:
    """What ``to_gguf`` wrote (``aligner to-gguf --json`` prints it)."""

    path: str
    type: str
    bytes: int
    architecture: str
    pre_tokenizer: str | None
    #: llama.cpp's converter knew the tokenizer; False: the pre-tokenizer was found on the corpus.
    recognized: bool
    texts_checked: int
    template: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_checkpoint(spec: "str | os.PathLike[str] | None") -> tuple[Path, str]:
    """The local directory of a corrector spec (None: the embedded demo corrector; a hub id: its
    snapshot, downloaded or from the cache) and the name it is known by."""
    from ..correctors import demo_corrector_path

    if spec is None:
        return demo_corrector_path(), "demo-corrector"
    text = str(spec)
    if text.startswith(("http://", "https://")):
        raise ConfigError(f"{text} is a completions server: there are no weights here to convert.", field="corrector",
                          fix="pass the corrector's directory or hub id.")
    if text.lower().endswith(".gguf"):
        raise ConfigError(f"{text} already is a GGUF file.", field="corrector",
                          fix="use it as it is: --corrector " + text)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{text} has no config.json: not a model directory.", field="corrector",
                              fix="pass a directory written by save_pretrained (e.g. by `aligner train`).")
        return path, text
    if looks_like_path(text):
        raise ConfigError(f"no such directory: {text}.", field="corrector",
                          fix="pass a corrector directory or a hub id such as aligner/aligner-7b-v1.0.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text)), text
    except Exception as exc:
        raise hide_cause(ConfigError(f"cannot fetch corrector {text!r} from the hub ({type(exc).__name__}).",
                                     field="corrector", fix="check the id, the network (or HF_HUB_OFFLINE and "
                                     "the cache), or pass a local directory."), exc)


def _check_causal(path: Path, name: str) -> None:
    config = json.loads((path / "config.json").read_text())
    if config.get("is_encoder_decoder"):
        arch = (config.get("architectures") or [config.get("model_type", "?")])[0]
        raise ConfigError(f"{name} is an encoder-decoder corrector ({arch}); GGUF export takes causal ones.",
                          field="corrector", fix=SEQ2SEQ_FIX)


def quantize(src: Path, dst: Path, gguf_type: str, threads: int | None = None) -> None:
    """llama.cpp's own quantizer (``llama_model_quantize``), as ``llama-quantize`` runs it."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _QUANTIZED[gguf_type])
    params.nthread = threads or 0
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise CorrectorError(f"llama.cpp's quantizer failed ({rc}) turning {src.name} into {gguf_type}.",
                             field="type", fix="try --type q8_0 (written directly by the converter).")


def verify(path: Path, hf_tokenizer: Any, texts: list[str]) -> None:
    """Load ``path`` with llama.cpp (the whole model) and check it tokenizes ``texts`` as the
    corrector does, BOS included (as the backend will tokenize prompts)."""
    import llama_cpp

    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False)
    except Exception as exc:
        raise hide_cause(CorrectorError(f"llama.cpp cannot load the converted file ({exc}).", field="corrector",
                                        fix="report it with `aligner to-gguf -v` output."), exc)
    try:
        bad = first_mismatch(texts, lambda t: hf_tokenizer(t)["input_ids"],
                             lambda t: llm.tokenize(t.encode("utf-8"), add_bos=True, special=False))
    finally:
        llm.close()
    if bad is not None:
        raise CorrectorError(f"llama.cpp's tokenization of the converted file differs from the corrector's: "
                             f"{describe(bad)}.", field="corrector",
                             fix="report it; the file was not written.")


def to_gguf(corrector: "str | os.PathLike[str] | None", out: "str | os.PathLike[str]", *, type: str = "q8_0",
            template: str | None = None, llama_cpp: "str | os.PathLike[str] | None" = None,
            threads: int | None = None, verbose: bool = False) -> GGUFExport:
    """Convert ``corrector`` (a directory, a hub id, or None for the embedded demo corrector) to
    the GGUF file ``out`` of ``type`` (one of :data:`GGUF_TYPES`), its template and checkpoint
    config in the file's ``aligner.*`` keys. ``template`` overrides the checkpoint's (a corrector
    without ``aligner_config.json`` needs it or gets aligner-v1.0). ``llama_cpp``: where llama.cpp's
    converter is (see :mod:`aligner.gguf.source`)."""
    if type not in GGUF_TYPES:
        raise ConfigError(f"unknown GGUF type {type!r}.", field="type", fix=f"use one of {', '.join(GGUF_TYPES)}.")
    out_path = Path(out).expanduser()
    if out_path.suffix.lower() != ".gguf":
        raise ConfigError(f"the output {out} does not end in .gguf.", field="out",
                          fix="name it like corrector-q8_0.gguf: the file is recognised by its suffix.")
    if not out_path.parent.is_dir():
        raise ConfigError(f"no such folder: {out_path.parent}.", field="out", fix="create it first.")
    t0 = time.perf_counter()
    from ..correctors.checkpoint import read_aligner_config
    from .source import find_converter, runtime_version

    runtime_version()  # a clear error without llama-cpp-python, before anything is read
    path, name = resolve_checkpoint(corrector)
    _check_causal(path, name)
    config = read_aligner_config(path)
    tmpl = get_template(template or config.get("template") or None)
    converter = find_converter(llama_cpp)
    texts = tokenizer_corpus(tmpl)
    meta = corrector_metadata(config, tmpl, source=name, gguf_type=type)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".to-gguf-") as tmp:
        direct = Path(tmp) / ("direct.gguf" if type not in _QUANTIZED else "f32.gguf")
        job = {"llama_cpp": str(converter), "model": str(path), "outfile": str(direct),
               "outtype": type if type not in _QUANTIZED else "f32", "metadata": meta, "corpus": texts,
               "verbose": verbose, "result": str(Path(tmp) / "result.json")}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the aligner package importable in the child
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        print(f"converting {name} with llama.cpp's converter ({converter}) to {type}", file=sys.stderr)
        proc = subprocess.run([sys.executable, "-m", "aligner.gguf._worker", str(job_file)], env=env)
        result_file = Path(job["result"])
        if not result_file.is_file():
            raise CorrectorError(f"llama.cpp's converter stopped without a result (exit {proc.returncode}).",
                                 field="corrector", fix="run again with -v to see its output.")
        result = json.loads(result_file.read_text())
        if not result["ok"]:
            if verbose and result.get("traceback"):
                print(result["traceback"], file=sys.stderr)
            raise ConfigError(f"cannot convert {name}: {result['error']}", field="corrector",
                              fix="see above; -v shows the converter's own log." if "traceback" in result else
                              "use a corrector whose architecture and tokenizer llama.cpp supports, or keep this "
                              "one on the PyTorch backend.")
        final = direct
        if type in _QUANTIZED:
            final = Path(tmp) / f"{type}.gguf"
            print(f"quantizing to {type} with llama.cpp's quantizer", file=sys.stderr)
            quantize(direct, final, type, threads)
        from transformers import AutoTokenizer

        verify(final, AutoTokenizer.from_pretrained(path), texts)
        os.replace(final, out_path)
    return GGUFExport(str(out_path), type, out_path.stat().st_size, result["architecture"],
                      result["pre_tokenizer"], result["recognized"], result["texts_checked"], tmpl.name,
                      round(time.perf_counter() - t0, 1))
