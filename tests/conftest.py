"""Shared fixtures: tiny real models saved to disk, loaded back the way a hub id is."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest_plugins = ["fixtures_openai"]

REPO = Path(__file__).resolve().parents[1]
from hh_data import REAL_HH as HH_RLHF  # noqa: E402  ($ALIGNER_HH_RLHF, else ../shared/data/…, else None)


def corpus_texts(limit: int = 300) -> list[str]:
    """Real text to train tiny tokenizers on (HH-RLHF rows when present, else a fixed sample)."""
    texts = ["How do I bake bread? Mix flour, water, salt and yeast, then bake at 220 C.",
             "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it "
             "more helpful and harmless: | ASSISTANT: ##Question: ##Answer: ##Correction:"]
    if HH_RLHF is not None:
        with gzip.open(HH_RLHF, "rt") as fh:
            for i, line in enumerate(fh):
                if i >= limit:
                    break
                row = json.loads(line)
                texts += [row["chosen"], row["rejected"]]
    return texts


@pytest.fixture(scope="session")
def tiny_causal_path(tmp_path_factory) -> Path:
    from aligner.tiny import make_tiny_corrector

    return make_tiny_corrector(tmp_path_factory.mktemp("tiny-llama"), corpus_texts(), "causal",
                               context=512, template="aligner-v1.0", init_scale=10.0)


@pytest.fixture(scope="session")
def tiny_seq2seq_path(tmp_path_factory) -> Path:
    from aligner.tiny import make_tiny_corrector

    return make_tiny_corrector(tmp_path_factory.mktemp("tiny-t5"), corpus_texts(), "seq2seq", init_scale=10.0)
