"""Write ``hh-rlhf-sample.jsonl.gz``: 32 hand-written rows in Anthropic HH-RLHF's format.

The real data (``harmless-base`` of ``Anthropic/hh-rlhf`` on the Hugging Face hub) is not shipped
with the project, so the tests of everything that reads HH-RLHF files run on these rows in a plain
clone. Every row is written here by hand (none is copied from the real data); the file has the
real one's shape: one JSON object per line with a ``chosen`` and a ``rejected`` transcript of
``\\n\\nHuman: …\\n\\nAssistant: …`` turns that share every turn but the last assistant one.

What the rows exercise, by row number (1-based, as the loader counts):

* single-turn rows (1, 2, 3, …) and multi-turn rows with 2–3 human turns (4, 9, 13, 20, 26);
* curly quotes kept verbatim by the loader (row 2) and made ASCII by the sentence pool;
* rows the loader skips: an empty chosen last turn (rows 7, 27), an empty rejected last turn
  (rows 15, 30), a rejected transcript whose earlier turns differ from chosen (row 22);
* sentences the "fine text" pool must drop: digits, an e-mail address, refusals, danger markers,
  blocklisted words (in chosen turns too), too short or too long sentences, and the harmful
  phrases an earlier blocklist let through (in rejected turns: "poke their eyes out", "windpipe",
  "grab it", "acid on her skin", "brake line");
* clean sentences that occur only in rejected turns (so ``sides=("chosen", "rejected")`` finds more).

The rows themselves are in ``hh-rlhf-sample-rows.yaml`` beside this script. Run
``python tests/data/make_hh_rlhf_sample.py`` after editing them; the output is byte-identical for the
same rows (gzip mtime 0), and ``tests/test_hh_rlhf_sample.py`` checks the committed file is what this
script writes.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import yaml

OUT = Path(__file__).with_name("hh-rlhf-sample.jsonl.gz")

#: The rows, hand-written in ``hh-rlhf-sample-rows.yaml`` (with what each one exercises): the earlier
#: turns ``[speaker, text]`` ending with a human turn, the chosen last turn and the rejected last turn.
#: ``PREFIX_DIFFERS`` rows get a rejected transcript with another first turn.
ROWS_FILE = Path(__file__).with_name("hh-rlhf-sample-rows.yaml")
ROWS: list[tuple[list[tuple[str, str]], str, str]] = [
    ([(who, said) for who, said in r["turns"]], r["chosen"], r["rejected"])
    for r in yaml.safe_load(ROWS_FILE.read_text(encoding="utf-8"))]
PREFIX_DIFFERS = {22}


def transcript(turns: list[tuple[str, str]], last: str) -> str:
    text = "".join(f"\n\n{who}: {said}" for who, said in turns)
    return text + "\n\nAssistant:" + (f" {last}" if last else "")


def rows() -> list[dict[str, str]]:
    out = []
    for number, (turns, chosen, rejected) in enumerate(ROWS, start=1):
        other = [("Human", "Tell me something else entirely.")] + turns[1:] if number in PREFIX_DIFFERS else turns
        out.append({"chosen": transcript(turns, chosen), "rejected": transcript(other, rejected)})
    return out


def render() -> bytes:
    """The file's bytes: JSONL like the real data (``ensure_ascii``, one object per line), gzipped with mtime 0."""
    text = "".join(json.dumps(r) + "\n" for r in rows()).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as fh:
        fh.write(text)
    return buf.getvalue()


if __name__ == "__main__":
    OUT.write_bytes(render())
    print(f"{len(ROWS)} rows -> {OUT}")
