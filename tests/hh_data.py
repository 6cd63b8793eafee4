"""Where the tests find HH-RLHF rows.

``SAMPLE`` (``tests/data/hh-rlhf-sample.jsonl.gz``, 32 rows written by the project, see
``tests/data/make_hh_rlhf_sample.py``) is always there: every behaviour that reads HH-RLHF files
is tested on it. Real data is an extra layer: the tests marked ``needs_real_hh`` run on the file
named by ``$ALIGNER_HH_RLHF``, else on ``../shared/data/hh-rlhf-harmless-1700.jsonl.gz`` beside the
checkout, and skip (saying where to get it) when there is none. The few tests that check exact
counts and rows of the 1,700-row sample (``needs_pinned_hh``) run only on that very file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

ENV = "ALIGNER_HH_RLHF"
SAMPLE = Path(__file__).resolve().parent / "data" / "hh-rlhf-sample.jsonl.gz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-1700.jsonl.gz"
#: sha256 of hh-rlhf-harmless-1700.jsonl.gz, the sample the exact-count tests were checked on by hand
PINNED_SHA256 = "da2169ba453bcc05583af375ca8cd5ff77a325e0e1c7264e328c922e63a6dca1"

WHERE = (f"set {ENV} to an HH-RLHF harmless-base file (e.g. harmless-base/train.jsonl.gz of the "
         f"Anthropic/hh-rlhf dataset on the Hugging Face hub), or place the project's 1,700-row sample at "
         f"{SHARED}; the same behaviours are tested on tests/data/hh-rlhf-sample.jsonl.gz without it")


def _real() -> tuple[Path | None, str]:
    named = os.environ.get(ENV)
    if named:
        path = Path(named).expanduser()
        return (path, "") if path.is_file() else (None, f"{ENV}={named} is not a file; {WHERE}")
    return (SHARED, "") if SHARED.is_file() else (None, f"real HH-RLHF data not found: {WHERE}")


REAL_HH, _MISSING = _real()


def _is_pinned(path: Path | None) -> bool:
    return path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_SHA256


needs_real_hh = pytest.mark.skipif(REAL_HH is None, reason=_MISSING or "-")
needs_pinned_hh = pytest.mark.skipif(
    not _is_pinned(REAL_HH),
    reason=_MISSING or (f"checks exact rows of hh-rlhf-harmless-1700.jsonl.gz (sha256 {PINNED_SHA256[:12]}…); "
                        f"{REAL_HH} is another file — point {ENV} at that sample to run it"))


def skip_without_real_hh() -> Path:
    """The real file, or skip the calling test/fixture with the reason above."""
    if REAL_HH is None:
        pytest.skip(_MISSING)
    return REAL_HH
