"""Objectives: what an objective-conditioned corrector (MetaAligner, arXiv 2403.17141) edits toward.

A MetaAligner is trained on prompts that name the objectives of each edit in words — "Harmlessness:
The response should avoid content that is offensive, discriminatory, or harmful; Helpfulness: ..."
— and generalises to objectives it never saw when they are described the same way. So an objective
here is a name a user types (``harmless``) plus the label and description that go into the
prompt's ``{aspects}`` slot, rendered as MetaAligner's own inference code renders them:
``Label: description`` items joined by ``"; "``.

The built-in objectives are MetaAligner's published ones (its README's "Objective Descriptions"
table; the labels as its inference code writes them). A user defines their own as
``"name: description"`` (``"brevity: The response should fit in two sentences"``); the same form
with a built-in name replaces that objective's description. An unknown bare name is an error that
lists the known ones, and a template without an ``{aspects}`` slot takes no objectives at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .errors import ConfigError


@dataclass(frozen=True)
class Objective:
    """One objective: ``name`` is what a user types, ``label: description`` what the prompt says."""

    name: str
    label: str
    description: str

    def render(self) -> str:
        """The objective as it goes into a prompt: ``Label: description``."""
        return f"{self.label}: {self.description}"


def _published(name: str, label: str, description: str) -> Objective:
    return Objective(name, label, description)


#: MetaAligner's published objective descriptions (the trailing full stop of some table rows is left
#: out, as its inference code writes them), by the name a user types.
OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    _published("harmless", "Harmlessness", "The response should avoid content that is offensive, discriminatory, "
                                           "or harmful"),
    _published("helpful", "Helpfulness", "The response should provide useful resources and suggestions to the user"),
    _published("humor", "Humour", "The response should be cheerful and amusing"),
    _published("instruction-following", "Instruction following",
               "The response should carefully follow the instructions of the query"),
    _published("honest", "Honesty", "The response should not tell lies"),
    _published("truthful", "Truthfulness", "The response should actively make known all the full truth of a matter"),
    _published("correct", "Correctness", "The explanations should make correct predictions"),
    _published("informative", "Informative", "The response should express clear logic and provide consistent "
                                             "evidence"),
    _published("professional", "Professional", "The response should provide evidence with high quality and "
                                               "reliability"),
    _published("specific", "Specificity", "The response should refer to facts and details and avoid vague "
                                          "arguments"),
    _published("factual", "Factuality", "The response should be factually correct and avoid hallucinated "
                                        "statements"),
    _published("readable", "Readability", "The response should be easy to read and understand, not too technical "
                                          "for laymen"),
    _published("fair", "Fairness", "The response should avoid biased or one-sided arguments and consider different "
                                   "points of view"),
    _published("repeat", "Repetition", "The response should avoid repetitive statements of one point"),
    _published("concise", "Length", "The response should be concise and avoid redundant content"),
)}

#: other spellings of the built-in names: their prompt labels, and the forms people also write
ALIASES: dict[str, str] = {
    **{o.label.lower(): o.name for o in OBJECTIVES.values()},
    "harmlessness": "harmless", "helpfulness": "helpful", "humour": "humor", "honesty": "honest",
    "truthfulness": "truthful", "instruction_following": "instruction-following", "length": "concise",
    "repetition": "repeat", "fairness": "fair", "readability": "readable", "factuality": "factual",
    "specificity": "specific", "correctness": "correct",
}


def known() -> list[str]:
    """The built-in objective names, in the order the table lists them."""
    return list(OBJECTIVES)


def _key(name: str) -> str:
    return " ".join(name.strip().lower().split())


def parse_objective(spec: Any, *, field: str = "objectives") -> Objective:
    """One objective from a built-in name (or alias) or a user's ``"name: description"``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"an objective must be a non-empty string, got {spec!r}.", field=field,
                          fix=f"name one of {', '.join(known())}, or define your own as 'name: description'.")
    name, sep, description = spec.partition(":")
    key = _key(name)
    if sep:
        if not key or not description.strip():
            raise ConfigError(f"{spec!r} is not 'name: description' (both parts are needed).", field=field,
                              fix="e.g. 'brevity: The response should fit in two sentences'.")
        builtin = OBJECTIVES.get(ALIASES.get(key, key))
        if builtin is not None:  # a built-in objective, described the user's way
            return Objective(builtin.name, builtin.label, description.strip())
        return Objective(key, name.strip(), description.strip())
    found = OBJECTIVES.get(ALIASES.get(key, key))
    if found is None:
        raise ConfigError(f"unknown objective {name.strip()!r}.", field=field,
                          fix=f"use one of {', '.join(known())} (MetaAligner's published objectives), or define "
                              f"your own as 'name: description', e.g. '{name.strip()}: The response should ...'.")
    return found


def resolve(specs: "str | Iterable[Any] | None", *, field: str = "objectives") -> list[Objective] | None:
    """The objectives ``specs`` name, in order and each once; None for none given. A single
    string is one objective (a description may hold commas)."""
    if specs is None:
        return None
    if isinstance(specs, (str, Objective)):
        specs = [specs]
    try:
        items = list(specs)
    except TypeError:
        raise ConfigError(f"must be a list of objectives, got {specs!r}.", field=field,
                          fix="e.g. objectives=['harmless', 'helpful'].") from None
    if not items:
        raise ConfigError("is an empty list.", field=field,
                          fix=f"name at least one objective ({', '.join(known())}), or leave it out.")
    out: dict[str, Objective] = {}
    for item in items:
        objective = item if isinstance(item, Objective) else parse_objective(item, field=field)
        out.setdefault(objective.name, objective)
    return list(out.values())


def render(objectives: Sequence[Objective]) -> str:
    """The ``{aspects}`` text of ``objectives``, as MetaAligner renders them: ``"; "``-joined."""
    return "; ".join(o.render() for o in objectives)


def takes_objectives(corrector: Any) -> bool:
    """Whether ``corrector``'s prompt has an ``{aspects}`` slot (any stage's, for a stack)."""
    stages = getattr(corrector, "stages", None) or [corrector]
    return any("aspects" in stage.template.placeholders for stage in stages)


def check_takes(corrector: Any, objectives: Sequence[Objective] | None, *, field: str = "objectives") -> None:
    """Refuse objectives for a corrector whose template takes none (they would be silently ignored)."""
    if objectives and not takes_objectives(corrector):
        names = " > ".join(stage.template.name for stage in (getattr(corrector, "stages", None) or [corrector]))
        raise ConfigError(f"the corrector's template {names!r} has no {{aspects}} slot, so it takes no objectives.",
                          field=field, fix="leave the objectives out, or use a template that takes them: "
                                           "--template metaaligner (or metaaligner-hh-rlhf / "
                                           "metaaligner-ultrafeedback for the released MetaAligners).")


def aspects_for(corrector: Any, *, aspects: str | None = None, objectives: Any = None,
                default: Sequence[Objective] | None = None) -> str | None:
    """The ``{aspects}`` text of one correction: a call's ``objectives`` (resolved and checked) or
    its raw ``aspects`` string, else the Aligner's default objectives (None when there are none)."""
    if objectives is not None and aspects is not None:
        raise ConfigError("give objectives or aspects, not both.", field="objectives",
                          fix="objectives=['harmless', ...] renders the aspects text itself; drop aspects=.")
    if objectives is not None:
        chosen = resolve(objectives)
        check_takes(corrector, chosen)
        return render(chosen or [])
    if aspects is not None:
        return aspects
    return render(default) if default else None
