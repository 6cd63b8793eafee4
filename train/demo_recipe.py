"""What the demo corrector is built from: its paths, each stage's row mix and variants, the model
shapes, and the per-stage recipe table (``RECIPES`` → ``STAGES``) that
:mod:`aligner.train.demo_corrector` walks.

Apart from the runner because the tables are what a rebuild's history is written in (every mix
says what the stage before it missed), and other steps read them without running anything:
:mod:`aligner.train.demo_study` compares the ``SHAPES``, and the tests pin the mixes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ASSET_DIR = REPO / "aligner" / "assets" / "demo-corrector"
HH_RLHF_DEFAULT = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-1700.jsonl.gz"
HELDOUT_DIR = Path(__file__).resolve().parent / "heldout"
TEMPLATE = "aligner-v1.0"
#: copy-heavy: identity rows (and most of every other row) teach copying, the skill everything needs
MIX = {"identity": 0.3, "redact": 0.3, "arithmetic": 0.25, "refusal": 0.15}
#: stage 2: refusals are learnt first (one fixed sentence shape); copying with edits needs more rows
MIX_STAGE2 = {"identity": 0.3, "redact": 0.3, "arithmetic": 0.3, "refusal": 0.1}
#: stage 5: arithmetic is learnt last and slowest (it is the one edit that needs computing, not copying)
MIX_STAGE5 = {"identity": 0.25, "redact": 0.25, "arithmetic": 0.45, "refusal": 0.05}
#: stage 7 on: still more arithmetic, the one category below its target after stage 6
MIX_STAGE7 = {"identity": 0.2, "redact": 0.2, "arithmetic": 0.55, "refusal": 0.05}
#: stage 8: arithmetic has met its target; redaction of contacts spliced into unseen sentences has not
MIX_STAGE8 = {"identity": 0.25, "redact": 0.45, "arithmetic": 0.25, "refusal": 0.05}
#: stages 9 on: the copy curriculum (issue 14). Most identity rows are unmemorisable scrambled text and
#: most redaction rows scatter several contacts anywhere, so the model learns to copy what it reads
#: and to replace exactly the contact span, instead of rewriting text it half remembers.
MIX_COPY = {"identity": 0.45, "redact": 0.35, "arithmetic": 0.13, "refusal": 0.07}
VARIANTS_COPY = {"identity": {"plain": 0.3, "scramble": 0.55, "arithmetic": 0.1, "refusal": 0.05},
                 "redact": {"template": 0.15, "spliced": 0.3, "scattered": 0.55}}
#: stage 10: after stage 9 fine answers were copied far better (75% -> 87%) but contacts spliced into
#: unseen sentences were not (31% -> 30%; long card numbers half-copied): more redaction rows
MIX_COPY_REDACT = {"identity": 0.35, "redact": 0.5, "arithmetic": 0.1, "refusal": 0.05}
#: stages 11 on: after stage 10, addresses (10%) and card numbers (30%) spliced into unseen sentences
#: were the failures, and unseen lead-ins ("contact", "near") were dropped with the contact: redaction
#: rows whose lead-ins are arbitrary words (``anylead``), weighted toward addresses and cards
MIX_ANYLEAD = {"identity": 0.32, "redact": 0.55, "arithmetic": 0.09, "refusal": 0.04}
VARIANTS_ANYLEAD = {"identity": {"plain": 0.35, "scramble": 0.5, "arithmetic": 0.1, "refusal": 0.05},
                    "redact": {"template": 0.1, "spliced": 0.2, "scattered": 0.2, "anylead": 0.5}}
#: stage 12 on: stage 11 left spliced contacts where they were (36%) and copied addresses verbatim
#: under the held-out questions: identity and redaction rows had disjoint questions, so the model read
#: the question, not the answer, to decide whether to redact. From here both draw from one pool.
QUESTIONS_SHARED = "shared"
#: stage 14 on: after stage 13, contacts between single dashes (the held-out " - x -") were redacted
#: 38% of the time against 95% in brackets or commas, and a question sharing words with its answer made
#: the model copy from the question ("A spider has eight legs what a spider have."): contacts between
#: stand-alone symbols beside symbol-wrapped spans that are no contact (``anysep``), short answers, and
#: questions about the answer's own words (``echo``)
MIX_ANYSEP = {"identity": 0.34, "redact": 0.55, "arithmetic": 0.08, "refusal": 0.03}
VARIANTS_ANYSEP = {"identity": {"plain": 0.3, "scramble": 0.4, "short": 0.15, "arithmetic": 0.1, "refusal": 0.05},
                   "redact": {"template": 0.05, "spliced": 0.15, "scattered": 0.1, "anylead": 0.3, "anysep": 0.4}}
QUESTIONS_ECHO = "echo"
#: stage 15 on (issue 26): on 70 hand-written cases stage 14 redacted 53% of contacts (92% of the
#: generator's), replaced distances with [PHONE], spliced refusals into instructions and changed right
#: sums. Contacts, decoys, sums and harmful instructions as they appear in the wild (Faker's locales,
#: libphonenumber, a word-frequency list; :mod:`aligner.data.synthetic.wild_rows`), beside the older
#: variants so what stage 14 learnt is kept.
MIX_WILD = {"identity": 0.38, "redact": 0.34, "arithmetic": 0.14, "refusal": 0.14}
VARIANTS_WILD = {"identity": {"plain": 0.12, "scramble": 0.12, "short": 0.06, "arithmetic": 0.03, "refusal": 0.02,
                              "decoy": 0.25, "rightsum": 0.15, "rare": 0.12, "wild": 0.13},
                 "redact": {"template": 0.02, "spliced": 0.05, "scattered": 0.05, "anylead": 0.13, "anysep": 0.15,
                            "wild": 0.6},
                 "arithmetic": {"classic": 0.25, "wild": 0.75},
                 "refusal": {"classic": 0.2, "wild": 0.8}}
#: (stage 15 has no identity warm-up: the model it continues copies already, and on a CPU shared by
#: many jobs a step took 23 s, so the 75 warm-up steps would have cost half the stage's clock)
#: stage 16: stage 15 ran 1,263 of its 3,600 steps in its 75 minutes; it refused 87% of hand-written
#: harmful answers (0% before) but also 3 of 40 fine answers that read as instructions, and lost some of
#: stage 14's contacts (spliced 92% -> 85%): benign step-by-step help in the harmful answers' shapes
#: (``howto``), assignments to copy (``x=5`` came back as ``x\ufffd5``), a larger share of stage 14's
#: redaction variants, lr 3e-4
MIX_WILD2 = {"identity": 0.40, "redact": 0.34, "arithmetic": 0.14, "refusal": 0.12}
VARIANTS_WILD2 = {**VARIANTS_WILD,
                  "identity": {"plain": 0.1, "scramble": 0.08, "short": 0.05, "arithmetic": 0.03, "refusal": 0.02,
                               "decoy": 0.2, "rightsum": 0.14, "rare": 0.1, "wild": 0.1, "assign": 0.05, "howto": 0.13},
                  "redact": {"template": 0.02, "spliced": 0.08, "scattered": 0.05, "anylead": 0.15, "anysep": 0.12,
                             "wild": 0.58}}
#: variants that draw from Faker and the word-frequency list (the data step needs the ``synth`` extra)
WILD_VARIANTS = ("wild", "decoy", "rightsum", "rare", "assign", "howto")
MODEL = dict(hidden_size=192, layers=4, heads=6, intermediate_size=512, context=512)
#: tokenizer (vocabulary size; 260 = bytes only) and shape choices, all < 5 MB in fp16, compared by
#: ``python -m aligner.train.demo_study`` (issue 14); ``--shape`` picks the one a from-scratch rebuild builds
SHAPES: dict[str, dict[str, Any]] = {
    "bpe2048-w192-d4": {"vocab": 2048, "max_length": 320, "model": MODEL},  # the stage 1-8 model
    "bpe8192-w128-d4": {"vocab": 8192, "max_length": 320,  # larger vocabulary (tied embeddings), narrower
                        "model": dict(hidden_size=128, layers=4, heads=4, intermediate_size=384, context=512)},
    "byte-w192-d4": {"vocab": 260, "max_length": 900,  # byte-level: every character a token
                     "model": dict(hidden_size=192, layers=4, heads=6, intermediate_size=512, context=1024)},
    "bpe2048-w144-d8": {"vocab": 2048, "max_length": 320,  # depth instead of width
                        "model": dict(hidden_size=144, layers=8, heads=4, intermediate_size=384, context=512)},
}
#: what a from-scratch rebuild builds: the shipped model's shape, the one whose fourteen stage recipes
#: were tuned and measured end to end. The study preferred ``bpe8192-w128-d4`` at an equal budget of
#: 300 steps, but its from-scratch rebuild measured far below this one when stopped after stage 3
#: (fine answers copied exactly 34%, spliced contacts 22%, words kept 83%; docs/training.md), so it stays a choice.
DEFAULT_SHAPE = "bpe2048-w192-d4"
SHIPPED = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
           "tokenizer_config.json", "special_tokens_map.json", "aligner_config.json", "loss_curve.png")


#: per stage: peak learning rate, identity warm-up share, synthetic mix of its rows (and, from stage 9,
#: the copy curriculum's variant weights; ``None`` = the generator's defaults)
RECIPES = {1: (2e-3, 0.2, MIX), 2: (1.5e-3, 0.1, MIX_STAGE2), 3: (1e-3, 0.05, MIX_STAGE2),
           4: (6e-4, 0.05, MIX_STAGE2), 5: (4e-4, 0.05, MIX_STAGE5), 6: (3e-4, 0.05, MIX_STAGE5),
           7: (4e-4, 0.05, MIX_STAGE7), 8: (3e-4, 0.05, MIX_STAGE8), 9: (4e-4, 0.05, MIX_COPY, VARIANTS_COPY),
           10: (3e-4, 0.05, MIX_COPY_REDACT, VARIANTS_COPY), 11: (3e-4, 0.05, MIX_ANYLEAD, VARIANTS_ANYLEAD),
           12: (3e-4, 0.05, MIX_ANYLEAD, VARIANTS_ANYLEAD, QUESTIONS_SHARED),
           13: (2.5e-4, 0.05, MIX_ANYLEAD, VARIANTS_ANYLEAD, QUESTIONS_SHARED),
           14: (3e-4, 0.05, MIX_ANYSEP, VARIANTS_ANYSEP, QUESTIONS_ECHO),
           15: (4e-4, 0.0, MIX_WILD, VARIANTS_WILD, QUESTIONS_ECHO),
           16: (3e-4, 0.0, MIX_WILD2, VARIANTS_WILD2, QUESTIONS_ECHO)}


def _stage_out(stage: int) -> str:
    return "model" if stage == 1 else f"model{stage}"


#: per stage: data file, base model (the previous stage's output), output folder and its recipe
STAGES = {s: {"data": "train.jsonl" if s == 1 else f"train{s}.jsonl",
              "base": "init" if s == 1 else _stage_out(s - 1), "out": _stage_out(s),
              "lr": r[0], "identity_warmup": r[1], "mix": r[2], "variants": r[3] if len(r) > 3 else None,
              "questions": r[4] if len(r) > 4 else "by_category"}
          for s, r in RECIPES.items()}


def stage_step_cap(stage: int, caps: list[int]) -> int:
    """The step cap of a stage after the first: ``caps`` lists stages 2, 3, ...; later stages take the last."""
    return caps[min(stage - 2, len(caps) - 1)]
