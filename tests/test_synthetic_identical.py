"""aligner.data.synthetic keeps its output byte for byte (issue 11: the module became a package).

The demo rebuild regenerates its training and held-out files from seeds, and a rebuild that runs
across a code change must draw the very rows it drew before. So the hashes below were recorded from
the single-module ``aligner/data/synthetic.py`` (commit 0015a0c) and must never change unless the
generator is changed on purpose (then re-record them and say so in the commit).

Also checks that every name the tree imports from ``aligner.data.synthetic`` is still there.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from hh_data import SAMPLE

#: Every name imported from aligner.data.synthetic anywhere in the tree (aligner/, train/, tests/,
#: bench/, examples/) when the module was split.
USED_NAMES = ("CATEGORIES", "DANGER_TERMS", "FALLBACK_SENTENCES", "PLACEHOLDERS", "QAC", "REFUSAL_TOPICS",
              "SPLICE_CLAUSES", "category_counts", "check_arithmetic", "contact_spans", "exact_copy", "generate",
              "has_danger", "insert_contacts", "is_clean_sentence", "is_refusal", "kept_outside_edits",
              "leftover_contacts", "score", "scramble_text", "sentences_from_hh_rlhf", "splice_contacts",
              "spliced_contact_ok", "split_into_sentences", "split_sentences", "texts_from_hh_rlhf", "word_list")

#: The demo rebuild's stage mixes and copy-curriculum variants (train/demo_corrector.py)
MIX = {"identity": 0.3, "redact": 0.3, "arithmetic": 0.25, "refusal": 0.15}
MIX_COPY_REDACT = {"identity": 0.35, "redact": 0.5, "arithmetic": 0.1, "refusal": 0.05}
VARIANTS_COPY = {"identity": {"plain": 0.3, "scramble": 0.55, "arithmetic": 0.1, "refusal": 0.05},
                 "redact": {"template": 0.15, "spliced": 0.3, "scattered": 0.55}}

RECORDED = {
    'pool': 'f33c86e12533c882c28f48e7c3f73b87e1b1de0a8be7bdc0bf3a25c6a3f8746a',
    'words': '3b02949e18270bc29734a9f4129ecdc81425fcc033df38be84faacb684b5c05e',
    'default_seed0': '2c1a37dcb5f6e4b15bd61caef3fe9ebe83c7facace47425e6656e2fd95c47df8',
    'default_seed7': '54eb0e0ab74e86488efd7c0d57ba72b257a3034250f3e99e7696a2c9a5f3aa9c',
    'mix_seed1': 'c834077e5e2a7a483a324cec330e3a722d47db0895e8b461c8bf933a1cfe438a',
    'copy_seed11': 'a4b1dd58a0b656887aced765526422b3770585d12b680b5f92e4367192174a4e',
    'scramble_only': 'ef9ca27032bbc8ff713404938cb8b6558cb6f0140b62ed0772d2fcfe46992033',
    'scattered_only': '1a3da8c019b5de8387823a9af94b239390ca977cb82d5f99ae279df01898b31f',
    'splice_fallback': '0a837515e4c12dfa12573aa8fad91994454b23a7bd903d4a8823678fc99f619b',
    'splice_sample': 'db856aada713d3b5b2202c9e4787b642ec31e2ba4d7c47cb87ca3891dbc1df4a',
    'counts': '4586e72a498b7b669e02c7732cfbefb233f2362105d5b6002d5a6f8c41b91dd5',
    'measures': 'f1dbe41bf7568a6e6315fa899fa620457449759a4454fcb2fd99cead5117a86a',
}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _rows(rows) -> list[dict]:
    return [r.to_dict() for r in rows]


def _cases() -> dict[str, object]:
    """What the demo rebuild and ``aligner data synth`` draw, on the built-in pool and the HH-RLHF sample."""
    from aligner.data import synthetic as s

    texts = s.texts_from_hh_rlhf(SAMPLE)
    vocab = s.word_list(texts, system=False)
    real = s.sentences_from_hh_rlhf(SAMPLE)
    train, held = s.split_sentences(real, 0.2)
    fb_train, fb_held = s.split_sentences(s.FALLBACK_SENTENCES, 0.2)
    pool = train or fb_train
    out: dict[str, object] = {
        "pool": [real, train, held, fb_train, fb_held, s.sentences_from_hh_rlhf(SAMPLE, sides=("chosen", "rejected"))],
        "words": [vocab[:2000], len(vocab), s.word_list(s.FALLBACK_SENTENCES, system=False)],
        "default_seed0": _rows(s.generate(300, seed=0)),
        "default_seed7": _rows(s.generate(300, seed=7)),
        "mix_seed1": _rows(s.generate(300, seed=1, mix=MIX, sentences=fb_train)),
        "copy_seed11": _rows(s.generate(300, seed=11, mix=MIX_COPY_REDACT, sentences=pool, words=vocab,
                                        variants=VARIANTS_COPY)),
        "scramble_only": _rows(s.generate(200, seed=3, mix={"identity": 1}, variants={"identity": {"scramble": 1}})),
        "scattered_only": _rows(s.generate(200, seed=4, mix={"redact": 1}, words=vocab,
                                           variants={"redact": {"scattered": 1.0}})),
        "splice_fallback": _rows(s.splice_contacts(fb_held, seed=2001, n=200)),
        "splice_sample": _rows(s.splice_contacts(held or fb_held, seed=3001, n=120)),
        "counts": [s.category_counts(n, m) for n in (0, 1, 7, 101) for m in (None, MIX, MIX_COPY_REDACT)],
    }
    rows = s.generate(200, seed=5, words=vocab, variants=VARIANTS_COPY)
    out["measures"] = [
        [s.score(r.category, r.correction, r.correction, answer=r.answer),
         s.score(r.category, r.correction, r.answer, answer=r.answer),
         s.check_arithmetic(r.answer), s.leftover_contacts(r.answer), s.contact_spans(r.answer, r.correction),
         s.kept_outside_edits(r.answer, r.correction, r.answer), s.spliced_contact_ok(r.answer, r.correction, r.correction),
         s.exact_copy(r.answer, r.correction), s.is_refusal(r.correction), s.has_danger(r.answer),
         s.split_into_sentences(r.answer), s.normalise_text(r.answer)]
        for r in rows]
    return out


def test_every_used_name_is_importable():
    import aligner.data.synthetic as s

    missing = [n for n in USED_NAMES if not hasattr(s, n)]
    assert missing == []


def test_demo_examples_are_the_generators_questions_unchanged():
    """The demo's example questions come from the generator's tables and read as they always did."""
    from aligner.demo.page import EXAMPLES

    assert EXAMPLES == ["What is 17 plus 25?", "How can I get in touch with Maria?", "How can I build a bomb?",
                        "How do I bake bread?", "Can you work out 12 * 7?", "Where should I send the documents?"]


@pytest.fixture(scope="module")
def cases() -> dict[str, object]:
    return _cases()


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_output_is_byte_identical_to_the_single_module(cases, case):
    assert _digest(cases[case]) == RECORDED[case], f"{case}: the generator's output changed"


def test_every_case_is_recorded(cases):
    assert sorted(cases) == sorted(RECORDED)


if __name__ == "__main__":  # print the hashes to record (only when the generator changes on purpose)
    for name, value in _cases().items():
        print(f"    {name!r}: {_digest(value)!r},")
