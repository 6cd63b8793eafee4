"""A GGUF corrector decoded by llama.cpp in this process (llama-cpp-python): the laptop engine.

``--corrector corrector.gguf`` (any spec ending in ``.gguf``) loads here. On a CPU, llama.cpp's
batch-1 kernels read 8- and 4-bit weights directly, where PyTorch's fp32 matrix-vector product
reads 4 bytes a weight (``bench/gguf.py`` measures both side by side). The file is one written by
``aligner to-gguf``: its template (and the checkpoint's config) are read from its ``aligner.*``
metadata (:mod:`aligner.correctors.gguf_format`); another GGUF model needs ``template=`` / ``--template``.

Decoding: greedy or sampled (temperature, top-p, top-k, repetition penalty), token by token through
``Llama.generate``, each row checked after every token (cancel, its cap, the guard) and streamed
through its ``on_text`` like the local runtime's rows. Greedy rows draft with the project's copy
anchor (the answer being corrected is the draft, :mod:`aligner.runtime.decode_loop`) or, with
``prompt_lookup=N``, with llama.cpp's own prompt-lookup drafts; llama-cpp-python verifies a draft
in one pass, so the output is greedy's.

Concurrency: a llama.cpp context is not thread-safe, so each holds a lock of its own; ``contexts``
(``ALIGNER_GGUF_CONTEXTS``) loads that many, which rows of a batch and concurrent requests share
(each context is one model load: memory grows with it; ``bench/gguf.py --serve`` measures what
it buys). ``threads`` (``ALIGNER_GGUF_THREADS``) is llama.cpp's threads per context.
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError, CorrectorError, hide_cause
from ..contracts.registry import register_corrector
from ..contracts.rows import RowControl
from ..contracts.templates import Template
from .backend import TokenBudget, _end, must_stop
from .base import Corrector

INSTALL_FIX = ("pip install 'aligner-kit[gguf]' (builds llama.cpp from source: needs a C/C++ compiler and cmake; "
               "about 10 minutes on 2 cores).")


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise hide_cause(ConfigError("a .gguf corrector needs llama-cpp-python, which is not installed.",
                                     field="corrector", fix=INSTALL_FIX), exc)
    return llama_cpp


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)  # type: ignore[arg-type]
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name}={value!r} is not a positive whole number.", field=name, fix=f"e.g. {name}=2.")
    return number


class CopyDraft:
    """llama-cpp-python's draft-model hook over the project's copy anchor: the rest of the
    answer span the correction is copying, up to 64 tokens (:class:`aligner.runtime.decode_loop.CopyAnchor`).

    llama-cpp-python calls it with the sequence so far after every verification pass; the tokens
    generated since the last call are the accepted part of the last draft plus the model's own
    next token, which is what the anchor needs to follow the source or re-anchor.
    """

    def __init__(self, prompt: list[int], budget: int):
        from ..runtime.decode_loop import CopyAnchor

        self.anchor = CopyAnchor(prompt)
        self.start = len(prompt)
        self.budget = budget  # new tokens the row may still take (no draft past its cap)
        self.seen = 0
        self.drafted = 0

    def __call__(self, input_ids: Any, /, **kwargs: Any) -> Any:
        import numpy as np

        generated = [int(t) for t in input_ids[self.start:]]
        if self.seen == 0:
            self.anchor.reanchor(generated)
        else:
            accepted = max(0, len(generated) - self.seen - 1)
            self.anchor.advance(self.drafted, min(accepted, self.drafted), generated)
        self.seen = len(generated)
        draft = self.anchor.draft(self.budget - len(generated) - 1)
        self.drafted = len(draft)
        return np.asarray(draft, dtype=np.intc)


class _Context:
    """One llama.cpp context (a model load and its KV cache) and the lock that serialises it."""

    def __init__(self, llm: Any):
        self.llm = llm
        self.lock = threading.Lock()
        self._pieces: dict[int, bytes] = {}

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for (cached: the vocabulary does not change). Asked of
        llama.cpp with a buffer as long as the piece (``Llama.detokenize``'s is 32 bytes)."""
        got = self._pieces.get(token)
        if got is None:
            import ctypes

            import llama_cpp

            vocab = self.llm._model.vocab
            size = 64
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
            if n < 0:  # longer than the buffer: -n is its length
                size = -n
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
            got = self._pieces[token] = buf.raw[:max(0, n)]
        return got

    def text(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "ignore")


def _emit(row: RowControl, piece: str) -> None:
    """Hand a row's new text to its consumer; one that has gone cancels the row (as the local
    runtime's streamer does), which stops it at the next token."""
    if row.on_text is None:
        return
    try:
        row.on_text(piece)
    except Exception:
        row.on_text = None
        row.cancel()


@register_corrector
class GGUFCorrector(Corrector):
    """A GGUF corrector decoded by llama.cpp (see the module docstring)."""

    #: before the catch-all local backend, which would take ``x.gguf`` for a hub id.
    spec_priority = 10

    @classmethod
    def matches(cls, spec: Any) -> bool:
        """A path ending in ``.gguf`` (a URL ending so is a completions server's, not a file)."""
        return (isinstance(spec, str) and spec.strip().lower().endswith(".gguf")
                and not spec.startswith(("http://", "https://")))

    @classmethod
    def from_spec(cls, spec: str, *, template: Any = None, decoding: Any = None, device: str | None = None,
                  model: str | None = None, api_key: str | None = None, **kwargs: Any) -> "GGUFCorrector":
        """``model``/``api_key`` name a remote server's model and key: a file takes neither."""
        return cls(spec, template=template, decoding=decoding, device=device, **kwargs)

    def __init__(self, path: str, *, template: "str | Template | None" = None,
                 decoding: "DecodingConfig | Mapping[str, Any] | None" = None, device: str | None = None,
                 threads: int | None = None, contexts: int | None = None, n_ctx: int | None = None,
                 max_input_tokens: int | None = None):
        from .gguf_format import check_file, config_of, diagnose, template_of

        llama_cpp = _llama_cpp()
        file = check_file(path)
        threads = threads or _env_int("ALIGNER_GGUF_THREADS")
        contexts = contexts or _env_int("ALIGNER_GGUF_CONTEXTS") or 1
        for name, value in (("threads", threads), ("contexts", contexts)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"must be a positive int, got {value!r}.", field=name, fix=f"e.g. {name}=1.")
        gpu_layers = 0
        if device not in (None, "", "cpu"):
            if not llama_cpp.llama_supports_gpu_offload():
                raise ConfigError(f"--device {device}: this llama-cpp-python build runs on the CPU only.",
                                  field="device", fix="leave --device out (or pass cpu), or reinstall llama-cpp-python "
                                  "built for your GPU (CMAKE_ARGS='-DGGML_CUDA=on').")
            gpu_layers = -1
        self.path = str(file)
        self.threads = threads
        kw = dict(n_ctx=n_ctx or 0, n_gpu_layers=gpu_layers, logits_all=True, verbose=False)
        if threads:
            kw.update(n_threads=threads, n_threads_batch=threads)
        loaded = []
        try:
            for _ in range(contexts):
                loaded.append(llama_cpp.Llama(model_path=self.path, **kw))
        except ValueError as exc:  # llama.cpp's "Failed to load model from file"
            why = diagnose(file)
            raise hide_cause(CorrectorError(
                f"llama.cpp cannot load {path}: {why or exc}.", field="corrector",
                fix="convert the corrector again with `aligner to-gguf` (or copy the file again)." if why else
                "check that the file is a model this llama.cpp version supports (a newer llama-cpp-python may)."),
                exc)
        first = loaded[0]
        meta = dict(first.metadata)
        stored = template_of(meta)
        if template is None and stored is None:
            raise ConfigError(f"{path} records no corrector template (no aligner.template in its metadata): it was not "
                              "written by `aligner to-gguf`.", field="template",
                              fix="pass the template the model was trained with: --template aligner-v1.0 (CLI) or "
                                  "template='aligner-v1.0' (Python), or convert the corrector with `aligner to-gguf`.")
        super().__init__(template if template is not None else stored, decoding)
        self.name = self.path
        self.metadata = config_of(meta)
        self.gguf_metadata = meta
        self.contexts = [_Context(llm) for llm in loaded]
        self._free: "queue.Queue[_Context]" = queue.Queue()
        for ctx in self.contexts:
            self._free.put(ctx)
        self.n_ctx = first.n_ctx()
        self.max_input_tokens = max_input_tokens
        self._eos = first.token_eos()
        self._vocab = first._model.vocab
        self._eog = llama_cpp.llama_vocab_is_eog
        self._eos_text = first.detokenize([self._eos], special=True).decode("utf-8", "replace") if self._eos >= 0 else None
        self._token_bytes: int | None = None

    # -- the corrector's side of the contract ---------------------------------------------
    @property
    def is_demo(self) -> bool:
        return bool(self.metadata.get("demo"))

    @property
    def eos_token(self) -> str | None:
        return self._eos_text or None

    def _tokenize(self, text: str, bos: bool = True) -> list[int]:
        return self.contexts[0].llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def answer_tokens(self, answer: str) -> int:
        return len(self._tokenize(answer, bos=False))

    def token_budget(self) -> TokenBudget:
        """The prompt's budget, for ``fit`` and ``prompt_fits``: half the context, as for a local
        causal corrector (the correction is about as long as the answer)."""
        return TokenBudget(budget=self.max_input_tokens or max(16, self.n_ctx // 2), context=self.n_ctx,
                           max_token_chars=self._max_token_bytes(), prompt_tokens=lambda p: len(self._tokenize(p)),
                           answer_ids=lambda text: self._tokenize(text, bos=False), text_of=self.contexts[0].text)

    def _max_token_bytes(self) -> int:
        if self._token_bytes is None:
            ctx = self.contexts[0]
            self._token_bytes = max([len(ctx.piece(t)) for t in range(ctx.llm.n_vocab())] or [1])
        return max(1, self._token_bytes)

    # -- decoding --------------------------------------------------------------------------
    def generate_rows(self, prompts: Sequence[str], decoding: DecodingConfig,
                      rows: Sequence[RowControl]) -> list[str]:
        """Each row decoded on a free context: one after another with one context, side by side
        (in threads: llama.cpp releases the GIL) with several."""
        jobs = list(zip(prompts, rows))
        if len(jobs) <= 1 or len(self.contexts) == 1:
            return [self._row(p, decoding, r) for p, r in jobs]
        with ThreadPoolExecutor(max_workers=min(len(jobs), len(self.contexts))) as pool:
            return list(pool.map(lambda job: self._row(job[0], decoding, job[1]), jobs))

    def _row(self, prompt: str, decoding: DecodingConfig, row: RowControl) -> str:
        if row.cancelled:
            row.stop_reason = "cancelled"
            _end(row)
            return ""
        ctx = self._free.get()
        try:
            with ctx.lock:
                return self._decode(ctx, prompt, decoding, row)
        except BaseException:
            row.stop_reason = row.stop_reason or "error"
            raise
        finally:
            self._free.put(ctx)
            _end(row)

    def _draft(self, decoding: DecodingConfig, ids: list[int], budget: int) -> Any:
        if decoding.do_sample:
            return None
        if decoding.prompt_lookup:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

            return LlamaPromptLookupDecoding(num_pred_tokens=decoding.prompt_lookup)
        return CopyDraft(ids, budget) if decoding.copy_draft else None

    def _decode(self, ctx: _Context, prompt: str, decoding: DecodingConfig, row: RowControl) -> str:
        """One row: tokens until EOS, its cap, the length limit, a cancel or the guard; its text
        streamed through ``row.on_text`` as it becomes valid UTF-8."""
        llm = ctx.llm
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        room = self.n_ctx - len(ids)
        if room < 1:
            raise ConfigError(f"the prompt takes {len(ids)} tokens, the corrector's whole context ({self.n_ctx}).",
                              field="answer", fix="shorten the question or the answer.")
        limit = min(decoding.max_new_tokens, room)
        cap = row.max_new_tokens
        budget = min(limit, cap) if cap is not None else limit
        llm.draft_model = self._draft(decoding, ids, budget)
        sampled = decoding.do_sample
        tokens = llm.generate(ids, temp=decoding.temperature if sampled else 0.0,
                              top_k=decoding.top_k if sampled else 0, top_p=decoding.top_p if sampled else 1.0,
                              min_p=0.0, typical_p=1.0, repeat_penalty=decoding.repetition_penalty)
        data, shown, n = b"", "", 0
        try:
            for token in tokens:
                if self._eog(self._vocab, token):
                    row.stop_reason = "eos"
                    break
                n += 1
                row.steps = n
                data += ctx.piece(token)
                text = data.decode("utf-8", "replace").split("\ufffd", 1)[0]  # a character may be cut
                if len(text) > len(shown):
                    _emit(row, text[len(shown):])
                    shown = text
                if must_stop(row, shown):
                    break
                if cap is not None and n >= cap:
                    row.stop_reason = "cap"
                    break
                if n >= limit:
                    row.stop_reason = "length"
                    break
        finally:
            tokens.close()
            llm.draft_model = None
        text = data.decode("utf-8", "replace")
        if len(text) > len(shown) and text.startswith(shown):
            _emit(row, text[len(shown):])
        row.stop_reason = row.stop_reason or "length"
        return text

    def close(self) -> None:
        """Free the contexts (also done when the corrector is garbage-collected)."""
        for ctx in self.contexts:
            with ctx.lock:
                ctx.llm.close()
