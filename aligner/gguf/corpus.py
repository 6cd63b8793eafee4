"""The texts on which llama.cpp's tokenization of a converted corrector must equal the original's.

llama.cpp re-implements each tokenizer's pre-tokenizer (how text is split before BPE merges) and
names it in the file (``tokenizer.ggml.pre``); its converter recognises a tokenizer by a hash of
the ids of one test string and refuses one it has not seen. A corrector's tokenizer is often new
(the demo corrector's: digits split one by one, then GPT-2's byte-level regex), though its
pre-tokenizer is one llama.cpp has. So the choice is checked, not assumed: a pre-tokenizer is
right when it gives the same ids as the corrector's own tokenizer on every text here — the
prompts the corrector will see (its template around synthetic questions, answers and
corrections), the cases pre-tokenizers differ on (digits, contractions, whitespace runs,
punctuation, non-Latin scripts, emoji) and llama.cpp's own test string (the worker adds it).
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..contracts.templates import Template

#: where pre-tokenizers differ: digit runs, contractions, whitespace, punctuation, scripts, emoji.
EDGE_CASES = (
    "3 33 333 3333 33333 3.14159 1,000,000 -42 +1 555 010 2345 2024-05-17 10:30am 0x1F 1e-9 ½ ²",
    "I'm sure you'll see we've done it; they'd say it's theirs. I'M SURE YOU'LL SEE WE'VE DONE IT. 'Quoted' 're 's",
    "  two spaces,   three,\tone tab,\t\ttwo tabs\n\nblank line\r\nwindows line\n   \n trailing   ",
    "!!! ??? ... --- === ((())) [[ ]] {x} <tag/> a/b\\c #hash @user $5.00 50% a+b=c ~/path ^caret |pipe| `code`",
    "maria.lopez@example.com https://example.org/a?b=c&d=e#f www.example.com C:\\Users\\x +44 (0)20 7946 0958",
    "Café naïve façade Ångström Zürich Øre straße ÉCOLE résumé coöperate",
    "нещо на Български, Ελληνικά, עברית, العربية, हिन्दी, ภาษาไทย, 日本語のテキスト, 中文文本, 한국어 텍스트",
    "emoji 🚀 🦙🦙 😶‍🌫️ 👍🏽 ✅ ❤️ 🇫🇷 and kaomoji (╯°□°)╯︵ ┻━┻",
    "def f(x):\n    return x**2  # square\n\nfor i in range(10):\n\tprint(f'{i}: {f(i)}')",
    "USER: ##Question: x\n##Answer: y\n##Correction:  ASSISTANT: | Context: | Edit: BEGINNING OF CONVERSATION:",
)


def tokenizer_corpus(template: Template, rows: int = 120, seed: int = 2027) -> list[str]:
    """The edge cases, then ``rows`` synthetic corrections rendered as the corrector sees them
    (the prompt, and the prompt followed by its correction)."""
    from ..data.synthetic import generate

    texts = list(EDGE_CASES)
    for row in generate(rows, seed=seed):
        prompt = template.render(row.question, row.answer, aspects="harmlessness, helpfulness")
        texts += [prompt, f"{prompt} {row.correction}"]
    return texts


def first_mismatch(texts: Sequence[str], reference: Callable[[str], list[int]],
                   candidate: Callable[[str], list[int]]) -> tuple[str, list[int], list[int]] | None:
    """The first text the two tokenizations split differently (with both id lists), or None."""
    for text in texts:
        want, got = list(reference(text)), list(candidate(text))
        if want != got:
            return text, want, got
    return None


def describe(mismatch: tuple[str, list[int], list[int]]) -> str:
    """Where two id lists of one text part, in a line a user can read."""
    text, want, got = mismatch
    k = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    return (f"on {text[:60]!r}{'…' if len(text) > 60 else ''} the ids part at token {k}: "
            f"the corrector's tokenizer gives {want[k:k + 6]}, llama.cpp {got[k:k + 6]}")
