"""The ``classifier`` gate: a sequence-classification model that reads (question, answer) and predicts
unsafe / safe, PKU-SafeRLHF's 19 harm categories (multi-label) and the severity.

It is trained by ``aligner train-gate`` (:mod:`aligner.train.gate`) on any encoder or causal base and
loads with ``from_pretrained`` (a directory or a hub id alike). One head of ``1 + 19 + 4`` logits:
the unsafe logit, one logit per category, and the four severity levels (safe, minor, moderate,
severe) as one softmax. Its ``config.json`` carries an ``aligner_gate`` object with the category and
severity names, the text format it reads, and the thresholds it was calibrated with on held-out
data: one for "unsafe", and one per minimum severity (the probability of *at least* that severity),
so ``gate_min_severity`` has a threshold of its own.

Spec: ``"demo"`` (the embedded demo gate), ``"classifier:PATH_OR_HUB_ID"``, or a directory whose
``config.json`` has ``aligner_gate``.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

from ..contracts.errors import ConfigError, hide_cause
from ..contracts.registry import register_gate
from ..data.pku_saferlhf import HARM_CATEGORIES, SEVERITY_LEVELS
from .base import Gate, Judgement, Pair, check_categories

#: the config.json key holding what the gate was trained and calibrated with
CONFIG_KEY = "aligner_gate"
#: what the model reads by default: Safe-RLHF's conversation format (as the eval's cost models do)
TEXT_FORMAT = "BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}"
DEMO_GATE = Path(__file__).resolve().parent.parent / "assets" / "demo-gate"


def num_labels(n_categories: int = len(HARM_CATEGORIES)) -> int:
    """Logits of the head: unsafe, the categories, the severity levels."""
    return 1 + n_categories + len(SEVERITY_LEVELS)


def split_logits(logits: Any, n_categories: int = len(HARM_CATEGORIES)) -> tuple[Any, Any, Any]:
    """(unsafe logit [B], category logits [B, C], severity logits [B, 4]) of the one head."""
    return logits[:, 0], logits[:, 1:1 + n_categories], logits[:, 1 + n_categories:]


def gate_loss(logits: Any, labels: Any, severity: Any, n_categories: int = len(HARM_CATEGORIES)) -> Any:
    """The training loss: BCE on unsafe, BCE on each category, cross-entropy on the severity level.
    ``labels`` is [B, 1 + C] (unsafe, then the categories), ``severity`` [B] in 0-3.

    The category terms are summed over the categories, not averaged: each category is true for a
    few answers only, and an average over 19 mostly-false labels is so small beside the other two
    terms that a small model settles for "no category" everywhere (measured: macro F1 0.0)."""
    import torch.nn.functional as F

    unsafe, cats, sev = split_logits(logits.float(), n_categories)
    category_loss = F.binary_cross_entropy_with_logits(cats, labels[:, 1:].float(), reduction="none").sum(-1).mean()
    return (F.binary_cross_entropy_with_logits(unsafe, labels[:, 0].float()) + category_loss
            + F.cross_entropy(sev, severity.long()))


def probabilities(logits: Any, n_categories: int = len(HARM_CATEGORIES)) -> tuple[list, list, list]:
    """Per row: P(unsafe), P(category) each, P(severity level) each — as plain lists."""
    import torch

    unsafe, cats, sev = split_logits(logits.float(), n_categories)
    return (torch.sigmoid(unsafe).tolist(), torch.sigmoid(cats).tolist(), torch.softmax(sev, dim=-1).tolist())


def at_least(severity_probs: Sequence[float]) -> dict[str, float]:
    """P(severity ≥ level) for minor, moderate, severe, from the four level probabilities."""
    return {name: float(sum(severity_probs[i:])) for i, name in enumerate(SEVERITY_LEVELS) if i > 0}


def model_inputs(model: Any, encoded: dict[str, Any]) -> dict[str, Any]:
    """Only the tokenizer outputs the model's ``forward`` takes (a Llama has no ``token_type_ids``)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and "token_type_ids" not in params:
        return {k: v for k, v in encoded.items() if k != "token_type_ids"}
    return {k: v for k, v in encoded.items() if k in params}


def read_gate_config(spec: str) -> dict[str, Any]:
    """The ``aligner_gate`` object of a model's config (a directory or a hub id), checked."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise hide_cause(ConfigError(f"cannot load the gate {spec!r}: {str(exc).splitlines()[0][:300]}",
                                     field="gate", fix="pass a directory written by `aligner train-gate` (or its "
                                                       "hub id), or 'demo' for the embedded demo gate."), exc)
    info = getattr(cfg, CONFIG_KEY, None)
    if not isinstance(info, dict):
        raise ConfigError(f"{spec!r} is not a gate: its config.json has no {CONFIG_KEY!r} object.", field="gate",
                          fix="train one with `aligner train-gate`, or pass a reward/cost model as 'cost:PATH'.")
    check_categories(info.get("categories", []), field=f"{CONFIG_KEY}.categories")
    severities = info.get("severities")
    if list(severities or []) != list(SEVERITY_LEVELS):
        raise ConfigError(f"unknown severity names {severities!r}.", field=f"{CONFIG_KEY}.severities",
                          fix=f"a gate's severities are {list(SEVERITY_LEVELS)}.")
    expected = num_labels(len(info["categories"]))
    if int(getattr(cfg, "num_labels", 0)) != expected:
        raise ConfigError(f"{spec!r} has {getattr(cfg, 'num_labels', None)} labels, not {expected}.", field="gate",
                          fix="a gate's head has 1 (unsafe) + categories + 4 (severity) labels.")
    return info


@register_gate
class ClassifierGate(Gate):
    """A trained gate model (see the module docstring)."""

    kind = "classifier"
    spec_prefix = "classifier:"
    spec_priority = 10
    predicts_severity = True

    def __init__(self, model: str | Path = "demo", *, threshold: float | None = None,
                 min_severity: str | None = None, device: str | None = None, batch_size: int = 32,
                 lazy: bool = False, **_: Any):
        spec = str(DEMO_GATE if str(model) == "demo" else model)
        if str(model) == "demo" and not (DEMO_GATE / "config.json").is_file():
            raise ConfigError("the embedded demo gate is missing from this installation.", field="gate",
                              fix="rebuild it with `python -m aligner.train.demo_gate`, or pass a gate directory.")
        self.config = read_gate_config(spec)
        self.is_demo = Path(spec).resolve() == DEMO_GATE.resolve() if Path(spec).exists() else False
        super().__init__(threshold=threshold, min_severity=min_severity or self.config.get("min_severity"),
                         default_threshold=float(self.thresholds.get("unsafe", 0.5)))
        self.name = "demo" if self.is_demo else str(model)
        self.spec = spec
        self.categories = list(self.config["categories"])
        self.category_threshold = float(self.config.get("category_threshold", 0.5))
        self.text_format = str(self.config.get("text_format", TEXT_FORMAT))
        self.max_length = int(self.config.get("max_length", 512))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"must be a positive int, got {batch_size!r}.", field="gate_batch_size",
                              fix="e.g. batch_size=32.")
        self.batch_size = batch_size
        self.device_spec = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.RLock()
        if not lazy:  # like a corrector: a broken model fails now, and no verdict pays for the load
            self.load()

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.config.get("thresholds") or {})

    @classmethod
    def matches(cls, spec: Any) -> bool:
        if not isinstance(spec, (str, Path)):
            return False
        text = str(spec)
        if text == "demo" or text.startswith(cls.spec_prefix):
            return True
        config = Path(text).expanduser() / "config.json"
        if config.is_file():
            try:
                return CONFIG_KEY in json.loads(config.read_text())
            except (OSError, ValueError):
                return False
        return False

    @classmethod
    def from_spec(cls, spec: Any, **kw: Any) -> "ClassifierGate":
        text = str(spec)
        if text.startswith(cls.spec_prefix):
            text = text[len(cls.spec_prefix):].strip()
            if not text:
                raise ConfigError("'classifier:' needs a path or hub id after it.", field="gate",
                                  fix="e.g. gate='classifier:runs/my-gate'.")
        return cls(text, **kw)

    def threshold_for(self, min_severity: str | None) -> float:
        if self.threshold is not None:
            return self.threshold
        return float(self.thresholds.get(min_severity or "unsafe", 0.5))

    # -- the model, loaded on first use ----------------------------------------------------------
    def load(self) -> "ClassifierGate":
        """Load the model now (it otherwise loads on the first verdict)."""
        with self._lock:
            if self._model is None:
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                from ..runtime.local_runtime import pick_device
                from ..runtime.progress import model_loading

                self.device = pick_device(self.device_spec)
                with model_loading():
                    model = AutoModelForSequenceClassification.from_pretrained(self.spec)
                tok = AutoTokenizer.from_pretrained(self.spec)
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token or tok.unk_token
                if getattr(model.config, "pad_token_id", None) is None:
                    model.config.pad_token_id = tok.pad_token_id
                self._tokenizer, self._model = tok, model.to(self.device).eval()
        return self

    def text(self, question: str, answer: str) -> str:
        """The exact text the model reads for one pair."""
        return self.text_format.replace("{question}", question).replace("{answer}", answer)

    def logits(self, pairs: Sequence[Pair]) -> Any:
        """The head's raw logits for a batch (float32, on the CPU)."""
        import torch

        self.load()
        texts = [self.text(q, a) for q, a in pairs]
        with self._lock:  # one tokenizer object: its padding state is not thread-safe
            enc = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                  max_length=self.max_length)
        enc = model_inputs(self._model, {k: v.to(self.device) for k, v in enc.items()})
        with torch.inference_mode():
            return self._model(**enc).logits.float().cpu()

    def judge(self, pairs: Sequence[Pair]) -> list[Judgement]:
        unsafe, cats, sev = probabilities(self.logits(pairs), len(self.categories))
        out = []
        for p_unsafe, p_cats, p_sev in zip(unsafe, cats, sev):
            names = [c for c, p in zip(self.categories, p_cats) if p >= self.category_threshold]
            level = SEVERITY_LEVELS[max(range(len(p_sev)), key=lambda i: p_sev[i])]
            out.append(Judgement(float(p_unsafe), names, level, at_least(p_sev)))
        return out
