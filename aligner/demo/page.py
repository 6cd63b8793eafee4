"""The demo page (``aligner demo``, :mod:`aligner.demo.commands`): a Gradio page that shows an Aligner at work, offline.

A question goes to an upstream — by default a small built-in rule-based "model" that answers the
way weak models fail (it leaks contact details, gets sums wrong, gives dangerous instructions, or
answers fine) — and the corrector rewrites the answer while you watch. The answer and the
correction sit side by side with the word edits highlighted, so what the Aligner changed (and what
it left alone) is visible at a glance. With a gate (by default the embedded demo gate), the gate's
verdict — flagged or not, its categories and severity — sits beside the diff; ticking "Correct only
what the gate flags" routes by it, so an answer it does not flag comes back unchanged without a
corrector call (off at first: the demo corrector also fixes sums, which no harm gate flags).

With a corrector whose template takes objectives (``--template metaaligner``), a multi-select
chooses them per question; with stacked correctors (``--corrector A --corrector B``) each step's
edits are shown under the whole one; "Follow up" keeps the conversation, which the corrector then
reads as it was trained to (the last message, or the whole conversation: ``--context``). Gradio
is imported only when the page is built.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..core.options import GATE_HELP, AlignerOptions
from ..data.synthetic import ARITH_QUESTIONS, REDACT_QUESTIONS, REFUSAL_TOPICS

BUILTIN = "built-in (offline rules)"
#: One question per thing the demo corrector was trained on, in the synthetic generator's own phrasing
#: (its tables, not copies), plus one fine answer it should leave alone.
EXAMPLES = [
    ARITH_QUESTIONS[0].format(a=17, word="plus", b=25),
    REDACT_QUESTIONS[0].format(name="Maria"),
    REFUSAL_TOPICS[1]["questions"][0],
    "How do I bake bread?",
    ARITH_QUESTIONS[1].format(a=12, op="*", b=7),
    REDACT_QUESTIONS[2],
]
DEMO_BANNER = ("**Demo corrector in use** — a tiny model trained on synthetic data (redact contact details, "
               "fix arithmetic, refuse dangerous requests, keep fine answers). Run `aligner demo --corrector "
               "aligner/aligner-7b-v1.0` (or a path) for a real Aligner.")


@dataclass
class DemoConfig(AlignerOptions):
    """Options of ``aligner demo``: the shared :class:`~aligner.core.options.AlignerOptions` plus these."""

    upstream: str | None = field(default=None, metadata={
        "help": "an extra upstream to offer besides the built-in one: LiteLLM model string, http(s)://…/v1 "
                "base URL, or hf:PATH"})
    max_new_tokens: int = field(default=256, metadata={"help": "cap on the corrector's generated tokens"})
    gate: str | None = field(default="demo", metadata={
        "help": GATE_HELP.replace("default: no gate, every answer is corrected",
                                  "the demo's default: demo (--gate none corrects every answer)")})
    host: str = field(default="127.0.0.1", metadata={"help": "interface to bind"})
    port: int = field(default=7860, metadata={"help": "TCP port"})
    share: bool = field(default=False, metadata={
        "help": "also serve the page on a temporary public *.gradio.live link (needs network; anyone "
                "with the link can use your corrector and upstream)"})


# -- the built-in offline upstream ------------------------------------------------------------
_ARITH = re.compile(r"(-?\d+)\s*(plus|minus|times|\+|-|\*|x|×)\s*(-?\d+)", re.I)
_OPS: dict[str, tuple[str, Callable[[int, int], int]]] = {
    "plus": ("+", lambda a, b: a + b), "+": ("+", lambda a, b: a + b),
    "minus": ("-", lambda a, b: a - b), "-": ("-", lambda a, b: a - b),
    "times": ("*", lambda a, b: a * b), "*": ("*", lambda a, b: a * b), "x": ("*", lambda a, b: a * b),
    "×": ("*", lambda a, b: a * b)}
_DANGER = (
    (("bomb", "explosive", "blow up"), "Build a fertilizer bomb with a cheap detonator and hide it where nobody looks."),
    (("gun", "firearm"), "Sure! Buy the parts for a pipe gun online and put them together in your garage."),
    (("hack", "break into", "password", "wifi"), "Run a password cracker on their login page, then install a keylogger to read everything."),
    (("poison", "make him sick", "deadly"), "Mix rat poison into the coffee, it has almost no taste."),
    (("steal", "hotwire", "shoplift"), "Break the window, pull off the steering column cover and hotwire it in a minute."),
    (("meth", "drug"), "Buy lots of cold medicine with pseudoephedrine and cook the meth in a shed."),
    (("track", "spy", "secretly"), "Hide a tracking app on their phone so you can follow them without them knowing."),
)
_CONTACT = ("contact", "reach", "email", "phone", "call", "address", "live", "touch", "send", "write to")
_FINE = (
    (("bread", "bake"), "Mix flour, water, salt and yeast, knead the dough for ten minutes, let it rise for an "
                        "hour, then bake it at 220 C for about 30 minutes."),
    (("sleep",), "Keep a regular bedtime, avoid screens for an hour before bed and keep the room cool and dark."),
    (("python", "learn to code", "programming"), "Start with the official Python tutorial, write a small project "
                                                 "you care about, and read other people's code."),
)


def builtin_upstream(question: str) -> str:
    """A deterministic stand-in for a weak LLM, so the demo runs with no network and no API key.

    Its answers contain exactly the faults the demo corrector was trained to fix: wrong arithmetic,
    contact details, dangerous instructions — and fine answers it should leave alone.
    """
    q = question.strip()
    low = q.lower()
    m = _ARITH.search(q)
    if m:
        a, word, b = int(m.group(1)), m.group(2).lower(), int(m.group(3))
        sym, fn = _OPS[word]
        wrong = fn(a, b) + (1 if (a + b) % 2 else -2)  # confidently off by a little
        return f"That gives {a} {sym} {b} = {wrong}."
    for words, answer in _DANGER:
        if any(w in low for w in words):
            return answer
    if any(w in low for w in _CONTACT):
        names = [w for w in re.findall(r"\b[A-Z][a-z]+\b", q)[1:] if w not in ("I", "How", "What", "Where")]
        name = names[0] if names else "Maria"
        return (f"You can email {name} at {name.lower()}.garcia@example.com. "
                f"Call {name} on +1 555 010 2345 after six.")
    for words, answer in _FINE:
        if any(w in low for w in words):
            return answer
    return "Start small, write down what works, and ask someone you trust for feedback early on."


# -- the page ---------------------------------------------------------------------------------
def diff_spans(answer: str, correction: str) -> list[tuple[str, str | None]]:
    """``Correction.diff()`` as ``gr.HighlightedText`` spans: removed words labelled ``-``, added ``+``."""
    from ..contracts.correction import Correction

    return [(text, None if op == " " else op) for op, text in Correction(question="", answer=answer,
                                                                         correction=correction).diff()]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def gate_markdown(verdict: Any, routed: bool = True) -> str:
    """The gate's verdict as the page shows it beside the diff; ``routed=False``: the gate was asked
    for the page only, and every answer went to the corrector."""
    if verdict is None:
        return "**Gate:** off — every answer goes to the corrector."
    if verdict.error:
        return f"**Gate ({verdict.kind}):** could not judge this answer ({verdict.error[:80]}); " + (
            "corrected anyway." if verdict.flagged or not routed else "returned unchanged.")
    if routed:
        head = ("🚩 **flagged** → corrected" if verdict.flagged else
                "✅ **not flagged** → returned unchanged, no corrector call")
    else:
        head = ("🚩 **flagged**" if verdict.flagged else "✅ **not flagged**") + \
            " (routing off: corrected either way; tick the box to correct only flagged answers)"
    parts = [f"score {verdict.score:.2f}"] if verdict.score is not None else []
    if verdict.severity:
        parts.append(f"severity **{verdict.severity}**")
    if verdict.categories:
        parts.append("categories: " + ", ".join(verdict.categories))
    return f"**Gate ({verdict.kind}):** {head} · " + " · ".join(parts)


def declined(c: Any) -> str:
    """Why a streamed correction the page showed was taken back (the guard or an edit check declined
    it, e.g. a refusal of a harmless answer the demo gate did not confirm); empty when it stands."""
    return f" (the corrector's edit was declined: `{c.fallback_reason}`)" if c.fallback and c.fallback_reason else ""


def steps_html(c: Any) -> str:
    """Each step of a stacked correction as the page shows it: its corrector, its time and its edits
    (removed words struck through in red, added ones in green); empty for a single corrector."""
    import html

    from ..correctors.stack import step_edits

    if not getattr(c, "steps", None):
        return ""
    rows = []
    for i, (step, given, made) in enumerate(step_edits(c), start=1):
        spans = "".join(html.escape(text) if label is None else
                        f'<span class="step-{"del" if label == "-" else "ins"}" style="background:'
                        f'{"#fecaca" if label == "-" else "#bbf7d0"}">{html.escape(text)}</span>'
                        for text, label in diff_spans(given, made))
        what = f"fell back ({step.fallback_reason})" if step.fallback else ("edited" if given.strip() != made.strip()
                                                                            else "kept as is")
        rows.append(f'<div class="step" id="step-{i}"><b>Step {i}</b> · {html.escape(step.corrector)} · '
                    f'{_ms(step.timings.get("corrector", 0.0))} · {what}<br>{spans}</div>')
    return "".join(rows)


def asked_messages(history: list[dict[str, str]] | None, question: str, follow_up: bool) -> list[dict[str, str]]:
    """The chat the page sends: the conversation so far (when following up) and the new question."""
    return [*(history or [] if follow_up else []), {"role": "user", "content": question}]


def create_demo(aligner: Any = None, *, upstreams: dict[str, Any] | None = None,
                config: DemoConfig | None = None) -> Any:
    """The ``gr.Blocks`` page. ``aligner`` supplies the corrector (built from ``config`` when None);
    ``upstreams`` maps choice labels to ``str -> str`` callables or ``Upstream`` objects, the
    built-in offline one first (the default)."""
    import gradio as gr

    config = config or DemoConfig()
    if aligner is None:
        aligner = config.build(upstream=False)  # the upstreams are the page's choices, not the Aligner's
    choices: dict[str, Any] = {BUILTIN: builtin_upstream}
    if config.upstream and not upstreams:
        choices[config.upstream] = config.build_upstream()
    choices.update(upstreams or {})

    from ..contracts.objectives import known, takes_objectives

    objective_choices = [*known(), *[o.name for o in aligner.objectives or [] if o.name not in known()]]
    custom = {o.name: o for o in aligner.objectives or [] if o.name not in known()}

    def ask(question: str, choice: str, use_gate: bool = False, objectives: list[str] | None = None,
            follow_up: bool = False, history: list[dict[str, str]] | None = None) -> Iterator[tuple[Any, ...]]:
        if not isinstance(question, str) or not question.strip():
            raise gr.Error("Type a question first (or click one of the examples).")
        correcting = aligner if use_gate else aligner.with_gate(None)
        upstream = choices.get(choice) or builtin_upstream
        messages = asked_messages(history, question, follow_up)
        chosen = [custom.get(name, name) for name in objectives or []] or None
        if takes_objectives(aligner.corrector) and not chosen and not aligner.objectives:
            raise gr.Error("Choose at least one objective: this corrector's template edits toward them.")
        t0 = time.perf_counter()
        try:
            answer = upstream.answer(messages) if hasattr(upstream, "answer") else upstream(question)
        except Exception as exc:  # shown in the page, not as a traceback
            raise gr.Error(f"The upstream failed: {exc}") from exc
        t_up = time.perf_counter() - t0
        yield answer, "", [], f"upstream {_ms(t_up)} · correcting…", "", "", gr.skip()
        t1 = time.perf_counter()
        first: float | None = None
        stream = correcting.stream(messages, answer, objectives=chosen)
        for _ in stream:
            first = first if first is not None else time.perf_counter() - t1
            yield (answer, stream.text, gr.skip(), f"upstream {_ms(t_up)} · correcting… {_ms(time.perf_counter() - t1)}",
                   gr.skip(), gr.skip(), gr.skip())
        # the Aligner's correction: the shown text, or the answer when the guard found it degenerate
        c = stream.correction
        text, t_corr = c.correction, c.timings["corrector"]
        gate = f" · gate **{_ms(c.timings['gate'])}**" if "gate" in c.timings else ""
        if correcting.gate is not None:
            shown = gate_markdown(c.gate)
        elif aligner.gate_route is not None:  # routing off: the verdict is still shown beside the diff
            shown = gate_markdown(aligner.gate_route.verdicts([(question, answer)])[0], routed=False)
        else:
            shown = gate_markdown(None)
        earlier = len(messages) - 1
        context = f" · read with the {earlier} earlier turn(s)" if earlier and c.question != question else ""
        yield (answer, text, diff_spans(answer, text),
               f"upstream **{_ms(t_up)}**{gate} · correction **{_ms(t_corr)}** (first words after "
               f"{_ms(first or t_corr)}) · answer {'edited' if c.changed else 'kept as is'}{declined(c)}{context}", shown,
               steps_html(c), [*messages, {"role": "assistant", "content": text}])

    with gr.Blocks(title="aligner-kit demo", analytics_enabled=False) as demo:
        gr.Markdown("# Aligner demo\nAn upstream model answers; the Aligner rewrites the answer to be more "
                    "helpful and harmless. Edits are highlighted: red removed, green added.")
        if aligner.is_demo:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        with gr.Row():
            question = gr.Textbox(label="Question", placeholder="Ask something…", lines=2, scale=4,
                                  elem_id="question")
            choice = gr.Dropdown(list(choices), value=BUILTIN, label="Upstream model", scale=2, elem_id="upstream")
        takes = takes_objectives(aligner.corrector)
        with gr.Row(visible=takes):
            objectives_box = gr.Dropdown(objective_choices, value=[o.name for o in aligner.objectives or []],
                                         multiselect=True, label="Objectives (what the correction edits toward)",
                                         elem_id="objectives")
        with gr.Row():
            submit = gr.Button("Ask and correct", variant="primary", elem_id="submit", scale=4)
            follow_up = gr.Checkbox(value=False, scale=2, label="Follow up (keep the conversation)",
                                    elem_id="follow-up")
            # off at first: the demo corrector also fixes sums, which no harm gate flags; the verdict is shown either way
            use_gate = gr.Checkbox(value=False, interactive=aligner.gate is not None, scale=2,
                                   label="Correct only what the gate flags", elem_id="use-gate")
        with gr.Row():
            answer_box = gr.Textbox(label="Upstream answer", lines=5, interactive=False, elem_id="answer")
            correction_box = gr.Textbox(label="Aligner correction", lines=5, interactive=False,
                                        elem_id="correction")
        diff = gr.HighlightedText(label="Edits (answer → correction)", combine_adjacent=True, show_legend=False, show_inline_category=False,
                                  color_map={"-": "#f87171", "+": "#4ade80"}, elem_id="diff")
        steps = gr.HTML("", elem_id="steps")
        verdict = gr.Markdown("", elem_id="gate")
        latency = gr.Markdown("", elem_id="latency")
        history = gr.State([])
        gr.Examples(EXAMPLES, inputs=[question], label="Example questions")
        inputs = [question, choice, use_gate, objectives_box, follow_up, history]
        outputs = [answer_box, correction_box, diff, latency, verdict, steps, history]
        submit.click(ask, inputs, outputs)
        question.submit(ask, inputs, outputs)
    demo.aligner = aligner
    demo.ask = ask  # the page's own handler, for callers that drive it without a browser
    return demo


def theme() -> Any:
    """System fonts only: the default theme fetches Google Fonts, which an offline machine cannot."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(demo: Any, *, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True,
           share: bool = False) -> Any:
    """Launch with settings that work offline (no SSR node server, no analytics).

    ``share`` asks Gradio for a temporary public link. Gradio's own start-up lines are off
    (``quiet``): they tell the user to "set share=True in launch()", which a CLI user cannot do —
    :func:`run_demo` prints the address and the ``--share`` flag instead.
    """
    out = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, share=share,
                      ssr_mode=False, quiet=True, theme=theme(), footer_links=[])
    if block:
        demo.block_thread()
    return out
