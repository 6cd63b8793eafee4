"""The lean greedy decode loop behind :class:`aligner.runtime.local_runtime.LocalGenerator`, with copy-aware
speculative decoding.

Why a loop of our own: transformers' ``generate`` spends most of a small model's step in Python
(logits processors, stopping criteria over the whole batch, cache bookkeeping) and runs
prompt-lookup decoding one row at a time. A correction mostly *copies the answer*, so the answer
is the ideal draft: each row keeps a pointer into its prompt's tokens at the place the correction
is copying from, drafts the rest of that span (up to ``DRAFT_MAX`` tokens, growing while drafts are
accepted), and one forward pass verifies every row's draft at once. The longest prefix where the
model's argmax agrees is accepted, plus the model's own next token, so the output is exactly plain
greedy's; after an edit the pointer is re-anchored by looking the last generated tokens up in the
prompt (longest n-gram first, the first match at or after the old pointer preferred).

Rows accept different numbers of tokens in one pass. The cache stays one padded tensor per layer:

* causal models keep the longest row's tokens and mask the others' rejected positions out (holes),
  with explicit ``position_ids`` counting each row's valid tokens, so no row is ever re-run;
* encoder-decoder models (T5's relative position bias reads cache indices, so holes would shift
  it) crop to the shortest row and re-feed the other rows' accepted tail on the next pass.

Rows that finish leave the batch (their cache rows are dropped). Per-row control (cancel, per-row
caps, the guard, streaming) follows the same rules as the ``generate`` path's criteria, token by
token, so a speculative step that accepts many tokens stops exactly where plain greedy would.
"""
from __future__ import annotations

import bisect
import inspect
from typing import Any, Sequence

from ..contracts.rows import GUARD_WINDOW

#: longest draft verified in one pass (per row).
DRAFT_MAX = 64
#: draft length right after (re-)anchoring; doubles with every fully accepted draft.
DRAFT_START = 8
#: longest n-gram of the last generated tokens looked up in the prompt to re-anchor.
ANCHOR_NGRAM = 3

#: generation-config settings that add logits processors the loop does not implement.
_PROCESSOR_SETTINGS = ("no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id",
                       "suppress_tokens", "begin_suppress_tokens", "min_new_tokens", "sequence_bias",
                       "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty")


def unsupported_reason(model: Any) -> str | None:
    """Why the loop cannot decode this model greedily exactly as ``generate`` does, or None."""
    gc = getattr(model, "generation_config", None)
    for name in _PROCESSOR_SETTINGS:
        if gc is not None and getattr(gc, name, None) not in (None, 0, [], ()):
            return f"its generation config sets {name}"
    if gc is not None and (getattr(gc, "min_length", 0) or 0) > 0:
        return "its generation config sets min_length"
    params = inspect.signature(model.forward).parameters
    if not ({"cache", "past_key_values"} & params.keys()):
        return "its forward takes no cache"
    if bool(getattr(model.config, "is_encoder_decoder", False)):
        if not {"encoder_outputs", "decoder_input_ids"} <= params.keys():
            return "its forward takes no encoder_outputs/decoder_input_ids"
    elif not {"position_ids", "attention_mask"} <= params.keys():
        return "its forward takes no position_ids"
    return None


class CopyAnchor:
    """Where in its prompt a row's correction is copying from, and how far to draft from there:
    the copy drafts of every backend that drafts from the answer (this loop's rows, and the
    llama.cpp corrector's draft hook, :class:`aligner.correctors.llamacpp.CopyDraft`)."""

    def __init__(self, source: list[int]):
        self.source = source
        self.ptr: int | None = None
        self.length = DRAFT_START
        self.index: list[dict[tuple[int, ...], list[int]]] = []  # n-gram -> sorted end positions
        for n in range(1, ANCHOR_NGRAM + 1):
            table: dict[tuple[int, ...], list[int]] = {}
            for end in range(n, len(source) + 1):
                table.setdefault(tuple(source[end - n:end]), []).append(end)
            self.index.append(table)

    def draft(self, budget: int) -> list[int]:
        if self.ptr is None or budget <= 0:
            return []
        return self.source[self.ptr:self.ptr + min(self.length, budget)]

    def advance(self, drafted: int, accepted: int, generated: list[int]) -> None:
        """After a pass: follow the source while it agrees, else re-anchor on the last tokens."""
        if self.ptr is not None and drafted and accepted == drafted:
            nxt = self.ptr + accepted
            if nxt < len(self.source) and self.source[nxt] == generated[-1]:
                self.ptr = nxt + 1
                self.length = min(DRAFT_MAX, self.length * 2)
                return
        self.reanchor(generated)

    def reanchor(self, generated: list[int]) -> None:
        old = self.ptr or 0
        self.ptr = None
        self.length = DRAFT_START
        for n in range(min(ANCHOR_NGRAM, len(generated)), 0, -1):
            ends = self.index[n - 1].get(tuple(generated[-n:]))
            if ends:
                k = bisect.bisect_left(ends, old)
                self.ptr = ends[k] if k < len(ends) else ends[-1]
                if self.ptr >= len(self.source):
                    self.ptr = None
                return


def _even_drafts(drafts: list[list[int]]) -> list[list[int]]:
    """Cut every draft to the length that 5 rows in 8 reach, when the batch is compute-bound.

    A pass is as wide as its longest row, and at batch 16 on a CPU its cost grows with its width
    (measured on the 30M benchmark corrector with a 120-token cache: 8 tokens a row cost 2.8x a
    1-token pass, 16 tokens 4.9x), so one row drafting 64 tokens while the others have nothing to
    draft makes every row pay for 64. Cutting at a low quantile keeps the pass as wide as most
    rows can use. Measured on the benchmark's 48 pairs at batch 16 (tokens/s, best of 3,
    interleaved): longest draft 150, the median 170, the 3/8 quantile 185, the 1/4 quantile 177.
    Drafts only propose tokens, so the output is unchanged.
    """
    lengths = sorted(len(d) for d in drafts)
    width = lengths[len(lengths) * 3 // 8]
    return [d[:width] for d in drafts]


class _Row:
    """The loop's state for one live row."""

    def __init__(self, slot: int, control: Any, source: list[int] | None):
        self.slot = slot  # index into the caller's rows / outputs
        self.control = control
        self.tokens: list[int] = []
        self.pending: list[int] = []  # generated tokens not yet in the cache (the first is the last token)
        self.valid = 0  # tokens of this row in the cache (prompt without padding + generated)
        self.anchor = CopyAnchor(source) if source is not None else None


def greedy_decode(model: Any, tokenizer: Any, input_ids: Any, attention_mask: Any, rows: Sequence[Any], *,
                  max_new_tokens: int, eos_token_id: int | Sequence[int] | None, pad_token_id: int,
                  copy_draft: bool = True, streamer: Any = None,
                  sources: Sequence[list[int] | None] | None = None) -> list[list[int]]:
    """New token ids per row (eos included where reached), greedy, identical to ``generate``.

    ``rows`` are :class:`aligner.contracts.rows.RowControl`; ``streamer`` a ``_RowStreamer`` (its
    ``put_rows`` receives each pass's new tokens per row). Left-padded ``input_ids`` for causal
    models, right-padded for encoder-decoders. ``sources`` (per row) replace the prompt's tokens
    as what is drafted from (tests use them to force long accepted and rejected drafts).
    """
    import torch

    is_ed = bool(getattr(model.config, "is_encoder_decoder", False))
    eos = set() if eos_token_id is None else ({eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id))
    n = input_ids.shape[0]
    masks = attention_mask.tolist()
    ids = input_ids.tolist()
    extra_sources = sources
    sources = [[t for t, m in zip(r, mk) if m] for r, mk in zip(ids, masks)]
    if copy_draft and extra_sources is not None:
        sources = [list(x) if x is not None else src for x, src in zip(extra_sources, sources)]
    state = [_Row(i, rows[i], sources[i] if copy_draft else None) for i in range(n)]
    out: list[list[int]] = [[] for _ in range(n)]
    device = input_ids.device

    def finish(row: _Row, reason: str) -> None:
        row.control.stop_reason = row.control.stop_reason or reason

    def guard_reason(row: _Row, upto: int) -> str | None:
        guard = row.control.guard
        if guard is None:
            return None
        text = tokenizer.decode(row.tokens[max(0, upto - GUARD_WINDOW):upto], skip_special_tokens=True)
        return guard.check(text[-guard.tail_chars:])

    def take(row: _Row, chunk: list[int]) -> list[int]:
        """Append a pass's tokens to a row, stopping where plain greedy's per-step checks would."""
        ctl = row.control
        if ctl.cancelled:  # cancelled while the pass ran: one token, as a one-token step would
            chunk = chunk[:1]
        start = len(row.tokens)
        stop_at, reason = len(chunk), None
        for k, tok in enumerate(chunk):
            steps = start + k + 1
            if ctl.cancelled:
                reason = "cancelled"
            elif tok in eos:
                reason = "eos"
            elif ctl.max_new_tokens is not None and steps >= ctl.max_new_tokens:
                reason = "cap"
            elif steps >= max_new_tokens:
                reason = "length"
            if reason is not None:
                stop_at = k + 1
                break
        row.tokens.extend(chunk[:stop_at])
        if ctl.guard is not None and reason not in ("cancelled", "eos", "cap"):
            g = guard_reason(row, len(row.tokens))
            if g is not None:
                for k in range(start + 1, len(row.tokens)):  # the first token at which it trips
                    early = guard_reason(row, k)
                    if early is not None:
                        g = early
                        del row.tokens[k:]
                        break
                reason = g
        ctl.steps = len(row.tokens)
        if reason is not None:
            finish(row, reason)
        return row.tokens[start:]

    params = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in params else "past_key_values"  # transformers 5.x renamed it
    with torch.inference_mode():
        mask = attention_mask.to(torch.long)
        if is_ed:
            from transformers import DynamicCache, EncoderDecoderCache

            enc_mask = mask
            encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=enc_mask, return_dict=True)
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            start_id = model.generation_config.decoder_start_token_id
            if start_id is None:
                start_id = model.config.decoder_start_token_id
            dec = torch.full((n, 1), int(start_id), dtype=torch.long, device=device)
            logits = model(encoder_outputs=encoder_outputs, attention_mask=enc_mask, decoder_input_ids=dec,
                           **{cache_name: cache}, use_cache=True).logits
            for row in state:
                row.valid = 1
        else:
            from transformers import DynamicCache

            cache = DynamicCache(config=model.config)
            pos = mask.cumsum(-1) - 1
            pos = pos.masked_fill(mask == 0, 1)
            kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, **{cache_name: cache},
                           use_cache=True, **kw).logits
            for row, mk in zip(state, masks):
                row.valid = sum(mk)
        first = logits[:, -1, :].argmax(-1).tolist()
        fresh: list[list[int]] = [[] for _ in range(n)]
        for row, tok in zip(state, first):
            fresh[row.slot] = take(row, [tok])
            row.pending = [tok]
            if row.anchor is not None:
                row.anchor.reanchor(row.tokens)
        if streamer is not None:
            streamer.put_rows(fresh)

        while True:
            for row in state:  # a consumer may have cancelled while it was fed
                if row.control.stop_reason is None and row.control.cancelled:
                    finish(row, "cancelled")
                    if streamer is not None:
                        streamer.put_rows([[] for _ in range(n)])
            keep = [k for k, row in enumerate(state) if row.control.stop_reason is None]
            if len(keep) < len(state):
                for k, row in enumerate(state):
                    if k not in keep:
                        out[row.slot] = row.tokens
                if not keep:
                    break
                idx = torch.tensor(keep, device=device)
                cache.batch_select_indices(idx)
                mask = mask.index_select(0, idx)
                if is_ed:
                    enc_mask = enc_mask.index_select(0, idx)
                    encoder_outputs["last_hidden_state"] = encoder_outputs["last_hidden_state"].index_select(0, idx)
                state = [state[k] for k in keep]
            b = len(state)
            # A pass costs about its tokens once the batch makes it compute-bound (a CPU at batch
            # 16): cap each row's draft so one pass verifies at most ~4 × DRAFT_MAX tokens.
            row_cap = max(DRAFT_START // 2, DRAFT_MAX * 4 // max(4, b))
            drafts = []
            for row in state:
                ctl = row.control
                left = max_new_tokens - len(row.tokens)
                if ctl.max_new_tokens is not None:
                    left = min(left, ctl.max_new_tokens - len(row.tokens))
                budget = min(left - 1, row_cap)  # the pass adds the model's own token after the draft
                if is_ed:  # re-fed pending tokens count against the pass's width
                    budget = min(budget, DRAFT_MAX + 1 - len(row.pending))
                drafts.append(row.anchor.draft(budget) if row.anchor is not None else [])
            if b > 4:
                drafts = _even_drafts(drafts)
            seqs = [row.pending + d for row, d in zip(state, drafts)]
            width = max(len(s) for s in seqs)
            past = cache.get_seq_length()
            inp = torch.tensor([s + [pad_token_id] * (width - len(s)) for s in seqs], dtype=torch.long, device=device)
            if is_ed:
                logits = model(encoder_outputs=encoder_outputs, attention_mask=enc_mask, decoder_input_ids=inp,
                               **{cache_name: cache}, use_cache=True).logits
            else:
                step_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], dtype=torch.long,
                                         device=device)
                mask = torch.cat([mask, step_mask], dim=1)
                posn = torch.tensor([[row.valid + j for j in range(width)] for row in state], dtype=torch.long,
                                    device=device)
                logits = model(input_ids=inp, attention_mask=mask, position_ids=posn, **{cache_name: cache},
                               use_cache=True).logits
            pred = logits.argmax(-1).tolist()
            committed = []
            fresh = [[] for _ in range(n)]
            for row, d, p in zip(state, drafts, pred):
                base = len(row.pending) - 1  # prediction for the token after the pending ones
                a = 0
                while a < len(d) and p[base + a] == d[a]:
                    a += 1
                chunk = d[:a] + [p[base + a]]
                got = take(row, chunk)
                fresh[row.slot] = got
                committed.append(len(row.pending) + a)
                if row.anchor is not None and row.control.stop_reason is None:
                    row.anchor.advance(len(d), a, row.tokens)
            if is_ed:
                cut = min(committed)
                if cut < width:
                    cache.crop(cut - width)  # a negative count: tokens to remove
                for row, d, c in zip(state, drafts, committed):
                    fed = row.pending + d[:c - len(row.pending)]
                    row.pending = fed[cut:] + [row.tokens[-1]]
            else:
                cut = max(committed)
                for k, (row, c) in enumerate(zip(state, committed)):
                    if c < width:
                        mask[k, past + c:] = 0
                    row.valid += c
                    row.pending = [row.tokens[-1]]
                if cut < width:
                    cache.crop(cut - width)
                    mask = mask[:, :past + cut]
            if streamer is not None:
                streamer.put_rows(fresh)
            if b == 0:
                break
    for row in state:
        out[row.slot] = row.tokens
    return out

