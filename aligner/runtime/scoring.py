"""Judge-free scoring: a reward model and a cost model (Safe-RLHF style) read question + answer.

Any ``AutoModelForSequenceClassification`` with a single output (``num_labels=1``) works; its
logit is the score. Higher reward is better; a cost below zero means the model judges the answer
safe (Safe-RLHF's convention), so the share of answers with cost < 0 is the "safe" share.

What the model reads: with ``text_format="auto"``, the tokenizer's chat template when it has one
(user = question, assistant = answer), else Safe-RLHF's conversation format
``BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}``, which its reward and cost models
were trained on. Any string with ``{question}`` and ``{answer}`` can be given instead.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..contracts.errors import ConfigError

SAFE_RLHF_FORMAT = "BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}"


class SequenceScorer:
    """A sequence-classification model that scores (question, answer) pairs in batches."""

    def __init__(self, model_id: str, *, role: str = "reward", device: str | None = None, batch_size: int = 8,
                 text_format: str = "auto", max_length: int | None = None, field: str | None = None):
        from .local_runtime import pick_device

        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive int, got {batch_size!r}.", field="score_batch_size",
                              fix="e.g. --score-batch-size 8.")
        if text_format != "auto" and ("{question}" not in text_format or "{answer}" not in text_format):
            raise ConfigError("must be 'auto' or a string with {question} and {answer}.", field="score_format",
                              fix="e.g. --score-format 'USER: {question} ASSISTANT: {answer}'.")
        self.role, self.model_id, self.batch_size, self.text_format = role, str(model_id), batch_size, text_format
        #: the option an error names (``cost_model`` in ``aligner eval``, ``gate`` for a cost gate)
        self.field = field or f"{role}_model"
        self.device = pick_device(device)
        self.model, self.tokenizer = self._load()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 4096
        tok_max = getattr(self.tokenizer, "model_max_length", None) or limit
        self.max_length = max_length or int(min(limit, tok_max if tok_max < 10**9 else limit))
        self.truncated = 0

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model_id)
            model, info = AutoModelForSequenceClassification.from_pretrained(self.model_id, output_loading_info=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load {self.model_id!r} as a sequence-classification model "
                              f"({type(exc).__name__}: {str(exc)[:300]}).", field=self.field,
                              fix="pass a directory or hub id of an AutoModelForSequenceClassification "
                                  "(a reward model with num_labels=1).") from exc
        missing = [k for k in (info or {}).get("missing_keys", []) if "score" in k or "classifier" in k]
        if missing:
            raise ConfigError(f"{self.model_id!r} has no trained score head ({missing[0]} was newly initialised, "
                              "so its scores would be random).", field=self.field,
                              fix="pass a reward/cost model saved as a sequence-classification model (Safe-RLHF's "
                                  "beaver models keep their head as 'score_head' and need the safe-rlhf package).")
        n = int(getattr(model.config, "num_labels", 1))
        if n != 1:
            raise ConfigError(f"{self.model_id!r} has num_labels={n}; a {self.role} model gives one score.",
                              field=self.field, fix="pass a model trained with num_labels=1.")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tok.pad_token_id
        model.to(self.device).eval()
        return model, tok

    def text(self, question: str, answer: str) -> str:
        """The exact text the model scores for one pair."""
        if self.text_format == "auto":
            if getattr(self.tokenizer, "chat_template", None):
                return self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False)
            return SAFE_RLHF_FORMAT.format(question=question, answer=answer)
        return self.text_format.replace("{question}", question).replace("{answer}", answer)

    def score(self, pairs: Sequence[tuple[str, str]], *, progress: bool = True, desc: str | None = None) -> list[float]:
        """One score per (question, answer), in order."""
        import torch
        from tqdm.auto import tqdm

        out: list[float] = []
        with tqdm(total=len(pairs), desc=desc or f"{self.role} scoring", unit="answer", disable=not progress) as bar:
            for start in range(0, len(pairs), self.batch_size):
                texts = [self.text(q, a) for q, a in pairs[start:start + self.batch_size]]
                full = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
                self.truncated += sum(1 for ids in full if len(ids) > self.max_length)
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                     max_length=self.max_length).to(self.device)
                with torch.no_grad():
                    logits = self.model(**enc).logits
                out += [float(v) for v in logits[:, 0].float().cpu()]
                bar.update(len(texts))
        return out
