"""The ``aligner`` command. Each job module contributes its subcommands through ``add_commands``.

Subcommand modules are imported only to build the parser (cheap: heavy libraries are imported by
the command's function when it runs), so ``aligner --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .errors import AlignerError
from .progress import quiet_model_loading

EXIT_CODES = """exit status:
  0    done
  2    an error you can fix: the message names the option (or file, row, field) and the fix
  3    aligner correct --input / aligner generate: the run finished but some rows failed (listed in OUTPUT.errors.jsonl;
       run the same command again to retry them)
  130  interrupted (Ctrl-C); results written so far are kept
"""

#: modules exposing ``add_commands(subparsers) -> None``; each parser sets ``func=callable(args)->int``.
COMMAND_MODULES = (
    "aligner.correct_commands",
    "aligner.generate",
    "aligner.data.commands",
    "aligner.train.commands",
    "aligner.serve.commands",
    "aligner.demo",
    "aligner.eval.commands",
    "aligner.gguf.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aligner", description="Correct any LLM's answers with an Aligner.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug information (and the library traceback behind an error)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # huggingface_hub prints its warnings through a handler of its own: passed on to the root
    # handler as well, every hub line (a retry, a slow download) was printed twice
    logging.getLogger("huggingface_hub").propagate = False
    quiet_model_loading(not args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AlignerError as exc:
        # The message names the option and the fix; the library's traceback under it helps only
        # when debugging, so it is printed with --verbose alone.
        if args.verbose:
            import traceback

            traceback.print_exception(exc.cause or exc, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; results written so far are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
