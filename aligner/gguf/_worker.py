"""The conversion itself, run in a child process by :func:`aligner.gguf.convert.to_gguf`.

A child process because llama.cpp's converter is written against the ``gguf-py`` that ships beside
it, which can be ahead of the ``gguf`` release installed here under the same version number: the
child puts llama.cpp's folder and its ``gguf-py`` first on ``sys.path`` (as
``convert_hf_to_gguf.py`` itself does) and nothing of it leaks into the caller's process.

The model class is llama.cpp's own for the checkpoint's architecture; a subclass changes three
things and writes nothing itself: the corrector's ``aligner.*`` keys are added to the file, BOS/EOS
handling is stated as the corrector's tokenizer does it, and an unrecognised BPE pre-tokenizer is
replaced by the llama.cpp one that splits the corpus (:mod:`aligner.gguf.corpus`) into the same
ids, found by writing the vocabulary alone under each name llama.cpp's converter knows and
tokenizing the corpus with llama.cpp.

    python -m aligner.gguf._worker JOB.json      (JOB: see ``to_gguf``; the result is written to job["result"])
"""
from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

#: tried first: the GPT-2-style byte-level splits small correctors' tokenizers are built on.
PREFERRED = ("gpt-2", "starcoder", "refact", "smollm", "default", "llama-bpe", "qwen2", "olmo", "deepseek-llm",
             "falcon", "mpt", "gpt-4o", "deepseek-coder")


class Unsupported(Exception):
    """Raised with a message for the user (the parent turns it into a ConfigError)."""


class _Recording:
    """The tokenizer given to llama.cpp's recogniser, noting the test text it encodes."""

    def __init__(self, tokenizer: Any, seen: list[str]):
        self._tok, self._seen = tokenizer, seen

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.append(text)
        return self._tok.encode(text, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)


def _candidates(text_model: Any) -> list[str]:
    """Every pre-tokenizer name llama.cpp's recogniser can answer, the usual suspects first."""
    try:
        source = inspect.getsource(text_model.get_vocab_base_pre)
    except (OSError, TypeError):
        source = ""
    known = list(dict.fromkeys(re.findall(r'res\s*=\s*"([^"]+)"', source)))
    return list(dict.fromkeys([*PREFERRED, *known]))


def _same_ids(path: Path, texts: list[str], hf: Any) -> tuple[bool, str]:
    """Whether llama.cpp, loading the vocabulary at ``path``, splits every text as ``hf`` does."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    try:
        # a vocabulary alone has no training context: llama.cpp says so on stderr at every load
        with suppress_stdout_stderr(disable=False):
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except Exception as exc:  # a name this llama.cpp build does not implement
        return False, f"llama.cpp does not load it ({exc})"
    try:
        for text in texts:
            want = hf.encode(text, add_special_tokens=False)
            got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            if list(want) != list(got):
                return False, f"differs on {text[:40]!r}"
        return True, ""
    finally:
        if hasattr(llm, "close"):
            llm.close()


def run(job: dict[str, Any]) -> dict[str, Any]:
    llama_dir = Path(job["llama_cpp"])
    sys.path[:0] = [str(llama_dir), str(llama_dir / "gguf-py")]
    import gguf
    import torch
    from conversion import ModelBase, ModelType, TextModel, get_model_architecture, get_model_class
    from transformers import AutoTokenizer

    if not job.get("verbose"):
        logging.getLogger("hf-to-gguf").setLevel(logging.ERROR)
        logging.getLogger("gguf").setLevel(logging.ERROR)
        logging.getLogger("gguf.gguf_writer").setLevel(logging.ERROR)
    model_dir = Path(job["model"])
    hparams = ModelBase.load_hparams(model_dir, False)
    arch = get_model_architecture(hparams, ModelType.TEXT)
    try:
        base = get_model_class(arch)
    except NotImplementedError:
        raise Unsupported(f"llama.cpp's converter ({llama_dir}) has no {arch}: this architecture cannot be "
                          "converted by this llama.cpp version.")
    hf = AutoTokenizer.from_pretrained(model_dir)
    probe = hf("x")["input_ids"]
    plain = hf.encode("x", add_special_tokens=False)
    add_bos = hf.bos_token_id is not None and len(probe) > len(plain) and probe[0] == hf.bos_token_id
    add_eos = hf.eos_token_id is not None and len(probe) > len(plain) and probe[-1] == hf.eos_token_id
    metadata: dict[str, Any] = job["metadata"]
    state: dict[str, Any] = {"base": None, "pre": None, "unrecognized": False, "seen": []}

    class CorrectorModel(base):  # type: ignore[misc, valid-type]
        model_arch = base.model_arch

        def get_vocab_base_pre(self, tokenizer: Any) -> str:
            try:
                return super().get_vocab_base_pre(_Recording(tokenizer, state["seen"]))
            except NotImplementedError:
                state["unrecognized"] = True
                return "default"  # a placeholder: the search below decides

        def get_vocab_base(self) -> Any:
            if state["base"] is None:  # the tokenizer is read once, however many names are tried
                state["base"] = super().get_vocab_base()
            tokens, toktypes, pre = state["base"]
            return tokens, toktypes, state["pre"] or pre

        def set_vocab(self) -> None:
            super().set_vocab()
            self.gguf_writer.add_add_bos_token(add_bos)
            self.gguf_writer.add_add_eos_token(add_eos)

        def set_gguf_parameters(self) -> None:
            super().set_gguf_parameters()
            for key, value in metadata.items():
                if isinstance(value, int):
                    self.gguf_writer.add_uint32(key, value)
                else:
                    self.gguf_writer.add_string(key, str(value))

    ftypes = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

    def make(out: Path, ftype: Any) -> Any:
        return CorrectorModel(model_dir, ftype, out, is_big_endian=False, use_temp_file=False, eager=False,
                              metadata_override=None, model_name=None, split_max_tensors=0, split_max_size=0,
                              dry_run=False, small_first_shard=False, remote_hf_model_id=None)

    texts = list(job["corpus"])
    tried: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        vocab = Path(tmp) / "vocab.gguf"
        make(vocab, ftypes["f32"]).write_vocab()
        texts = state["seen"][:1] + texts  # llama.cpp's own test string
        ok, why = _same_ids(vocab, texts, hf)
        recognized = not state["unrecognized"]
        if not ok and state["base"] is not None:  # a BPE vocabulary: find the pre-tokenizer that agrees
            for name in _candidates(TextModel):
                state["pre"] = name
                tried.append(name)
                make(vocab, ftypes["f32"]).write_vocab()
                ok, _ = _same_ids(vocab, texts, hf)
                if ok:
                    break
        if not ok:
            state["pre"] = None
            if state["base"] is None:
                raise Unsupported(f"llama.cpp's tokenization of this corrector's vocabulary differs from the "
                                  f"corrector's own ({why}).")
            raise Unsupported("the corrector's tokenizer splits text in a way none of llama.cpp's "
                              f"{len(tried)} pre-tokenizers does (checked on {len(texts)} texts: "
                              f"{', '.join(tried[:8])}, ...): llama.cpp would feed the model other ids than it "
                              "was trained on.")
        make(Path(job["outfile"]), ftypes[job["outtype"]]).write()
    pre = state["pre"] or (state["base"][2] if state["base"] is not None else None)
    return {"ok": True, "architecture": arch, "pre_tokenizer": pre, "recognized": recognized,
            "tried": len(tried), "texts_checked": len(texts), "add_bos": add_bos}


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(level=logging.INFO if job.get("verbose") else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        result = run(job)
    except Unsupported as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        result = {"ok": False, "error": f"llama.cpp's converter failed: {type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    Path(job["result"]).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
