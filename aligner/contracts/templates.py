"""Named, versioned prompt templates for correctors, and parsing of what they generate.

Templates are data, never code paths: the released Aligners were trained on exact strings and any
byte of difference (a missing space before ``ASSISTANT:``) measurably hurts them, so each string is
stored verbatim and pinned by a test. A user can register their own or pass a raw string.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .errors import TemplateError

_PLACEHOLDER = re.compile(r"\{(question|answer|aspects)\}")
_REQUIRED = ("question", "answer")
# Strings after which a generation has gone past the correction (EOS written out, or a new turn).
STOP_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "BEGINNING OF CONVERSATION:",
                 "\nUSER:")

#: Model card decoding: up to 2048 new tokens, deterministic.
DEFAULT_DECODING: Mapping[str, object] = {"max_new_tokens": 2048, "do_sample": False}
#: The paper's evaluation decoding (§ experiments): temperature 0.3, top-p 0.95, top-k 10 and a
#: frequency penalty of 1.2 (transformers' closest knob is ``repetition_penalty``).
PAPER_DECODING: Mapping[str, object] = {"max_new_tokens": 2048, "do_sample": True, "temperature": 0.3,
                                        "top_p": 0.95, "top_k": 10, "repetition_penalty": 1.2}


@dataclass(frozen=True)
class Template:
    """A prompt string with ``{question}``, ``{answer}`` (and optionally ``{aspects}``) slots.

    ``response_marker`` is where the correction begins in a full decoded sequence (the model card's
    "take the text after ``ASSISTANT:``").
    """

    name: str
    text: str
    response_marker: str = "ASSISTANT:"
    description: str = ""
    decoding: Mapping[str, object] = field(default_factory=lambda: dict(DEFAULT_DECODING))

    def __post_init__(self) -> None:
        found = set(_PLACEHOLDER.findall(self.text))
        missing = [p for p in _REQUIRED if p not in found]
        if missing:
            raise TemplateError(
                f"template {self.name!r} has no {{{missing[0]}}} placeholder.", field="template",
                fix="a template must contain both {question} and {answer}, e.g. "
                    "'USER: {question} | {answer} ASSISTANT:'.")

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.text))

    def render(self, question: str, answer: str, *, aspects: str | None = None) -> str:
        """The exact prompt string; values are inserted verbatim (braces in them are safe)."""
        values = {"question": question, "answer": answer}
        if "aspects" in self.placeholders:
            if not aspects:
                raise TemplateError(f"template {self.name!r} needs objectives.", field="objectives",
                                    fix="pass objectives=['harmless', 'helpful'] (--objective harmless "
                                        "--objective helpful), or a raw aspects='...' text.")
            values["aspects"] = aspects
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)

    def parse(self, generated: str, *, eos_token: str | None = None) -> str:
        """The correction inside generated text.

        Accepts either only the new tokens or the whole decoded sequence (then the text after the
        last response marker is taken); stops at an EOS string or the start of a new turn.
        """
        text = generated
        if self.response_marker and self.response_marker in text and text.lstrip().startswith(
                self.text[:20]):
            text = text.rsplit(self.response_marker, 1)[1]
        return cut_at_stop(text, (*STOP_MARKERS, *((eos_token,) if eos_token else ()))).strip()


def cut_at_stop(text: str, markers: Iterable[str]) -> str:
    """Text up to the first of ``markers`` (EOS written out, a new conversation turn, a stop string)."""
    cut = len(text)
    for marker in markers:
        i = text.find(marker) if marker else -1
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


_REGISTRY: dict[str, Template] = {}


def register(template: Template, *, overwrite: bool = False) -> Template:
    """Add a template to the registry so it can be named by string everywhere (CLI, config)."""
    if template.name in _REGISTRY and not overwrite:
        raise TemplateError(f"a template named {template.name!r} exists.", field="template",
                            fix="choose another name or pass overwrite=True.")
    _REGISTRY[template.name] = template
    return template


register(Template(
    "aligner-v1.0",
    "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more "
    "helpful and harmless: {question} | {answer} ASSISTANT:",
    description="The released aligner/aligner-7b-v1.0 (Llama-2-7B base) prompt. Default."))
register(Template(
    "qac",
    "BEGINNING OF CONVERSATION: USER: ##Question: {question}\n##Answer: {answer}\n##Correction:  "
    "ASSISTANT:",
    description="The official repository's current training prompt (no instruction sentence)."))
register(Template(
    "empathy",
    "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more "
    "empathic and helpful: {question} | {answer} ASSISTANT:",
    description="Empathy-tuned Aligner variant."))
register(Template(
    "metaaligner",
    "Edit the following Question-Answer pair to make it better considering these aspects: "
    "{aspects} | Context: {question} | Answer: {answer} | Edit: ",
    response_marker="| Edit:",
    description="Objective-conditioned correction (MetaAligner, arXiv 2403.17141); needs objectives."))
register(Template(
    "metaaligner-hh-rlhf",
    "You are an assistant to human. You will be provided with a context and an answer. Consider the context, "
    "then edit the answer to improve it considering these aspects: {aspects} | Context: {question} | "
    "Answer: {answer} | Edit: ",
    response_marker="| Edit:",
    description="The released MetaAligner-HH-RLHF models' prompt (multi-turn contexts); needs objectives."))
register(Template(
    "metaaligner-ultrafeedback",
    "You are an assistant to human. You will be provided with a query and an answer. Consider the query, "
    "then edit the answer to improve it considering these aspects: {aspects} | Query: {question} | "
    "Answer: {answer} | Edit: ",
    response_marker="| Edit:",
    description="The released MetaAligner-UltraFeedback models' prompt; needs objectives."))

DEFAULT_TEMPLATE = "aligner-v1.0"


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_template(spec: "str | Template | None" = None) -> Template:
    """A registered name, a :class:`Template`, or a raw template string containing placeholders."""
    if spec is None:
        return _REGISTRY[DEFAULT_TEMPLATE]
    if isinstance(spec, Template):
        return spec
    if not isinstance(spec, str):
        raise TemplateError(f"expected a template name or string, got {type(spec).__name__}.",
                            field="template", fix=f"use one of {names()} or a string with "
                                                  "{question} and {answer}.")
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if _PLACEHOLDER.search(spec):
        marker = "ASSISTANT:" if "ASSISTANT:" in spec else ""
        return Template("custom", spec, response_marker=marker, description="user-supplied")
    raise TemplateError(f"unknown template {spec!r}.", field="template",
                        fix=f"use one of {names()} (see `aligner templates list`) or pass a template "
                            "string containing {question} and {answer}.")
