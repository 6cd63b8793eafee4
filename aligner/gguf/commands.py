"""``aligner to-gguf``: a corrector to a GGUF file (see :mod:`aligner.gguf.convert`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import GGUF_TYPES

DESCRIPTION = """\
Convert a causal corrector (a directory or a hub id; 'demo' for the embedded demo corrector) to a GGUF
file that llama.cpp loads (llama-cpp-python, llama-server, Ollama, LM Studio), with llama.cpp's own
converter; its template and checkpoint config travel in the file. Examples:
  aligner to-gguf runs/my-corrector corrector-q8_0.gguf --type q8_0
  aligner to-gguf demo demo-f32.gguf --type f32
  aligner correct "Q?" --answer "A." --corrector corrector-q8_0.gguf
Needs the gguf extra: pip install 'aligner-kit[gguf]'."""


def run_to_gguf(args: argparse.Namespace) -> int:
    from .convert import to_gguf

    spec = None if args.corrector == "demo" and not Path("demo").is_dir() else args.corrector
    done = to_gguf(spec, args.out, type=args.type, template=args.template, llama_cpp=args.llama_cpp,
                   threads=args.threads, verbose=getattr(args, "verbose", False))
    if args.json:
        print(json.dumps(done.to_dict()))
    else:
        how = ("recognised by llama.cpp" if done.recognized else
               f"mapped to llama.cpp's '{done.pre_tokenizer}', same ids on {done.texts_checked} texts")
        print(f"wrote {done.path} ({done.type}, {done.bytes / 2 ** 20:.1f} MiB, {done.architecture}, template "
              f"{done.template}; tokenizer {how}) in {done.seconds:.0f} s", file=sys.stderr)
    return 0


#: where this module's commands stand in ``aligner --help`` (lower first; see aligner.cli)
HELP_ORDER = 80


def add_commands(sub: Any) -> None:
    p = sub.add_parser("to-gguf", help="convert a corrector to a GGUF file for llama.cpp (laptops, Ollama)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corrector", help="corrector directory or hub id ('demo': the embedded demo corrector)")
    p.add_argument("out", help="the .gguf file to write")
    p.add_argument("--type", default="q8_0", choices=GGUF_TYPES,
                   help="weights: f32 (identical corrections), f16, q8_0 (default: fast, near-identical), "
                        "q4_k_m (smallest)")
    p.add_argument("--template", default=None, help="the corrector's template, when its directory does not record one")
    p.add_argument("--llama-cpp", default=None, metavar="PATH",
                   help="llama.cpp checkout or llama-cpp-python source (.tar.gz) holding convert_hf_to_gguf.py; "
                        "default: $ALIGNER_LLAMA_CPP, else the installed llama-cpp-python's, fetched once into ~/.cache")
    p.add_argument("--threads", type=int, default=None, help="quantizer threads (q4_k_m)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=run_to_gguf)
