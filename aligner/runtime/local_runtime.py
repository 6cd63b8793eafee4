"""The local transformers runtime shared by local correctors and local upstreams (``hf:`` specs).

One place owns the device choice, left padding, the KV cache, streaming, per-row control and
prompt-lookup / copy-aware decoding, so a causal corrector and a causal upstream decode exactly the
same way. The settings they read are :class:`aligner.contracts.decoding.DecodingConfig`.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Sequence

from ..contracts.decoding import DecodingConfig
from ..contracts.errors import ConfigError
from ..contracts.rows import GUARD_WINDOW, RowControl, iterate_row, notify_end


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class LocalGenerator:
    """Batched and streamed generation from a transformers model (decoder-only or encoder-decoder)."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        # Decoder-only models must be left padded so every row's next token follows its own prompt.
        tokenizer.padding_side = "right" if self.is_encoder_decoder else "left"
        self._lock = threading.Lock()  # one generate() at a time per model; batching happens above
        # Settle the tokenizer's backend state (padding and truncation off, as every later call asks)
        # now, before threads share it: from here on an encode only reads it (see token_ids).
        self.token_ids([""])

    @property
    def _batch_dependent(self) -> bool:
        """Whether a token's logits depend on the other tokens of its pass (dynamic int8
        quantization scales activations per pass), which would make a verified draft differ from
        plain greedy: such a model decodes without copy drafts."""
        return any(hasattr(m, "_packed_params") for m in self.model.modules())

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """Longest sequence the model accepts (prompt + generation for decoder-only models)."""
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        tml = getattr(self.tokenizer, "model_max_length", None)
        return tml if isinstance(tml, int) and 0 < tml < 1_000_000 else 512

    def token_ids(self, texts: Sequence[str], *, special: bool = True) -> list[list[int]]:
        """Each text's token ids, neither padded nor truncated: the one way this runtime encodes.

        Why never the tokenizer's own padding: a fast tokenizer keeps padding and truncation as
        state on its one shared Rust backend, and transformers sets that state on every call (on
        for a padded batch, off for a plain count) just before encoding. A server encodes in
        several threads at once (a request's fit and cap, the batch, the usage count), so one
        thread switched padding off under another's batch, which came back ragged ("Unable to
        create tensor") and failed every request in it. Asking for neither leaves the state as
        ``__init__`` settled it, so every call only reads it and no lock is needed (``_encode``
        pads itself). ``verbose=False``: an over-long text is how truncation starts, not an error.
        """
        return self.tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"]

    def count_tokens(self, text: str, *, special: bool = True) -> int:
        return len(self.token_ids([text], special=special)[0])

    def uses_loop(self, decoding: DecodingConfig) -> bool:
        """Whether ``generate`` runs the project's lean greedy loop (else transformers' ``generate``).

        The loop is greedy only: sampling and repetition penalty stay with ``generate``, as does a
        model whose generation config adds logits processors the loop does not implement.
        """
        if decoding.engine == "hf":
            return False
        from .decode_loop import unsupported_reason

        why = ("it decodes greedily only" if decoding.do_sample or decoding.repetition_penalty != 1.0
               else unsupported_reason(self.model))
        if why is not None and decoding.engine == "loop":
            raise ConfigError(f"the lean decode loop cannot run this configuration: {why}.", field="engine",
                              fix="use engine='auto' (falls back to transformers' generate) or engine='hf'.")
        return why is None

    def _gen_kwargs(self, decoding: DecodingConfig, prompt_len: int, batch: int) -> dict[str, Any]:
        kw = decoding.hf_kwargs()
        if not self.is_encoder_decoder:
            kw["max_new_tokens"] = max(1, min(kw["max_new_tokens"], self.context_length - prompt_len))
        else:
            kw["max_new_tokens"] = max(1, min(kw["max_new_tokens"], self.context_length))
        if decoding.prompt_lookup and batch == 1 and not decoding.do_sample:
            kw["prompt_lookup_num_tokens"] = decoding.prompt_lookup
        kw["pad_token_id"] = self.tokenizer.pad_token_id
        kw["eos_token_id"] = self.tokenizer.eos_token_id
        return kw

    def _encode(self, prompts: list[str]) -> Any:
        """``input_ids`` and ``attention_mask`` of the batch, padded to its longest prompt on the
        model's side (left for decoder-only models) — what ``tokenizer(padding=True)`` returns,
        padded here so the shared tokenizer is never switched to padding (see ``token_ids``)."""
        import torch

        ids = self.token_ids(prompts)
        width = max(len(row) for row in ids)
        pad, left = self.tokenizer.pad_token_id, not self.is_encoder_decoder
        tokens, mask = [], []
        for row in ids:
            fill = width - len(row)
            tokens.append([pad] * fill + row if left else row + [pad] * fill)
            mask.append([0] * fill + [1] * len(row) if left else [1] * len(row) + [0] * fill)
        return {"input_ids": torch.tensor(tokens, dtype=torch.long, device=self.device),
                "attention_mask": torch.tensor(mask, dtype=torch.long, device=self.device)}

    def generate(self, prompts: list[str], decoding: DecodingConfig,
                 rows: "list[RowControl] | None" = None) -> list[str]:
        """New text for each prompt, in order (special tokens removed).

        ``rows`` (one per prompt) make the batch controllable row by row: each is checked after
        every decoding step, and a row that is cancelled, hits its own cap or trips its guard stops
        there (its ``stop_reason`` says why) while the others go on; rows with ``on_text`` receive
        their text as it is generated. A row cancelled before the call is not generated at all.
        """
        import torch

        if not prompts:
            return []
        rows = list(rows) if rows is not None else [RowControl() for _ in prompts]
        if len(rows) != len(prompts):
            raise ValueError(f"{len(rows)} rows for {len(prompts)} prompts")
        live = [i for i, row in enumerate(rows) if not row.cancelled]
        for i, row in enumerate(rows):
            if row.cancelled:
                row.stop_reason = "cancelled"
                notify_end(row)
        out_texts = [""] * len(prompts)
        if not live:
            return out_texts
        if decoding.batch_invariant and len(live) > 1:
            # alone, a row runs the same shapes (so the same float sums) whatever its neighbours
            for i in live:
                out_texts[i] = self.generate([prompts[i]], decoding, [rows[i]])[0]
            return out_texts
        sub = [rows[i] for i in live]
        enc = self._encode([prompts[i] for i in live])
        width = enc["input_ids"].shape[1]
        kw = self._gen_kwargs(decoding, width, len(live))
        caps = [row.max_new_tokens for row in sub]
        if all(c is not None for c in caps):  # the batch need not run past its longest row
            kw["max_new_tokens"] = max(1, min(kw["max_new_tokens"], max(caps)))  # type: ignore[type-var]
        start = 1 if self.is_encoder_decoder else width  # where new tokens begin in input_ids
        criteria = _row_criteria(self.tokenizer, sub, start, self.tokenizer.eos_token_id)
        streamer = _RowStreamer(self.tokenizer, sub) if any(r.on_text or r.on_end for r in sub) else None
        loop = self.uses_loop(decoding)
        try:
            with self._lock, torch.inference_mode():
                if loop:
                    from .decode_loop import greedy_decode

                    new_ids = greedy_decode(self.model, self.tokenizer, enc["input_ids"], enc["attention_mask"],
                                            sub, max_new_tokens=kw["max_new_tokens"],
                                            eos_token_id=kw["eos_token_id"], pad_token_id=kw["pad_token_id"],
                                            copy_draft=decoding.copy_draft and not self._batch_dependent,
                                            streamer=streamer)
                else:
                    out = self.model.generate(**enc, **kw, stopping_criteria=criteria, streamer=streamer)
        except BaseException:
            for row in sub:
                row.stop_reason = row.stop_reason or "error"
            raise
        finally:
            for row in sub:
                row.stop_reason = row.stop_reason or "length"
            if streamer is not None:
                streamer.close()
        new = new_ids if loop else (out if self.is_encoder_decoder else out[:, width:])
        for i, text in zip(live, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
            out_texts[i] = text
        return out_texts

    def stream(self, prompt: str, decoding: DecodingConfig, row: "RowControl | None" = None) -> Iterator[str]:
        """Text pieces as tokens are generated (generate keeps the KV cache between steps).

        Leaving the loop early cancels the generation (it stops within a step) instead of letting
        it run on behind the model lock.
        """
        row = row if row is not None else RowControl()
        return iterate_row(row, lambda: self.generate([prompt], decoding, [row]))


#: a row's guard reads the tail of its text (GUARD_WINDOW tokens, from :mod:`aligner.contracts.rows`) every few
#: steps: a cancel is checked after every step, the text (~0.1 ms a row with the decode) every 4th
#: step, so a runaway row stops at most 3 steps after its run is clear; the verdict reads the text anyway.
_GUARD_EVERY = 4
_CRITERIA_CLASS: Any = None


def _row_criteria(tokenizer: Any, rows: list[RowControl], start: int, eos_id: int | None) -> Any:
    """A ``StoppingCriteriaList`` with one criterion that stops rows one by one: it returns a bool
    per row, which ``generate`` ands into its unfinished-rows mask, so a stopped row only receives
    padding while the rest of the batch decodes on."""
    global _CRITERIA_CLASS
    from transformers import StoppingCriteria, StoppingCriteriaList

    if _CRITERIA_CLASS is None:
        class _RowCriteria(StoppingCriteria):
            def __init__(self, tokenizer: Any, rows: list[RowControl], start: int, eos_id: int | None):
                self.tokenizer, self.rows, self.start, self.eos_id = tokenizer, rows, start, eos_id
                self.guarded = any(r.guard is not None for r in rows)

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                import torch

                steps = input_ids.shape[1] - self.start
                behind = max([steps - r.steps for r in self.rows if r.stop_reason is None] or [1])
                judge = self.guarded and steps % _GUARD_EVERY == 0  # the guard reads the text every few steps
                window = min(steps, max(behind, GUARD_WINDOW if judge else 0))
                recent = input_ids[:, input_ids.shape[1] - window:].tolist()  # one copy to the host
                done = []
                for i, row in enumerate(self.rows):
                    if row.stop_reason is not None:
                        done.append(True)
                        continue
                    fresh = recent[i][window - (steps - row.steps):]
                    row.steps = steps
                    reason = None
                    if row.cancelled:
                        reason = "cancelled"
                    elif self.eos_id is not None and self.eos_id in fresh:
                        reason = "eos"
                    elif row.max_new_tokens is not None and steps >= row.max_new_tokens:
                        reason = "cap"
                    elif judge and row.guard is not None:
                        text = self.tokenizer.decode(recent[i][-GUARD_WINDOW:], skip_special_tokens=True)
                        reason = row.guard.check(text[-row.guard.tail_chars:])
                    if reason is not None:
                        row.stop_reason = reason
                    done.append(reason is not None)
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        _CRITERIA_CLASS = _RowCriteria
    return StoppingCriteriaList([_CRITERIA_CLASS(tokenizer, rows, start, eos_id)])


class _RowStreamer:
    """A ``generate`` streamer that splits each step's tokens by row and emits each row's stable text.

    Byte-level tokenizers can end a step in the middle of a UTF-8 character (decoded as U+FFFD),
    and what that turns into depends on later tokens. Emitting only text before the first U+FFFD
    guarantees a row's pieces concatenate to exactly its batch-decoded text (the parity tests rely
    on it). A row that has stopped is finished (``on_end``) as soon as its last token is in, not
    when the whole batch is.
    """

    def __init__(self, tokenizer: Any, rows: list[RowControl]):
        self.tokenizer = tokenizer
        self.rows = rows
        self.ids: list[list[int]] = [[] for _ in rows]
        self.emitted = ["" for _ in rows]
        self.ended = [False] * len(rows)
        self.prompt_seen = False

    def _text(self, i: int) -> str:
        return self.tokenizer.decode(self.ids[i], skip_special_tokens=True)

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompt (or the decoder's start token)
            self.prompt_seen = True
            return
        per_row = value.tolist()
        if value.dim() == 1:
            per_row = [[t] for t in per_row]
        self.put_rows(per_row)

    def put_rows(self, per_row: list[list[int]]) -> None:
        """Each row's new tokens of one step (any number per row: the lean loop's speculative
        passes accept several at once)."""
        for i, toks in enumerate(per_row):
            if self.ended[i]:
                continue
            row = self.rows[i]
            self.ids[i].extend(int(t) for t in toks)
            if row.on_text is not None:
                stable = self._text(i).split("\ufffd", 1)[0]
                if len(stable) > len(self.emitted[i]) and stable.startswith(self.emitted[i]):
                    self._send(row, stable[len(self.emitted[i]):])
                    self.emitted[i] = stable
            if row.stop_reason is not None and len(self.ids[i]) >= row.steps:
                self._end(i)

    def _send(self, row: RowControl, piece: str) -> None:
        try:
            row.on_text(piece)  # type: ignore[misc]
        except Exception:  # the consumer has gone: stop feeding it, keep the batch going
            row.on_text = None
            row.cancel()

    def _end(self, i: int) -> None:
        if self.ended[i]:
            return
        self.ended[i] = True
        row = self.rows[i]
        if row.on_text is not None:
            text = self._text(i)
            if len(text) > len(self.emitted[i]) and text.startswith(self.emitted[i]):
                self._send(row, text[len(self.emitted[i]):])
                self.emitted[i] = text
        row.stop_reason = row.stop_reason or "length"
        notify_end(row)

    def end(self) -> None:
        for i in range(len(self.rows)):
            self._end(i)

    close = end
