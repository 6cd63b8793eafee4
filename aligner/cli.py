"""The ``aligner`` command. Each job module contributes its subcommands through ``add_commands``.

Command modules are found through the ``aligner.commands`` entry point group (aligner-kit's own
``pyproject.toml`` declares the built-in ones; a third-party package adds commands the same way),
so import-graph tools and plug-ins see the same list the CLI uses::

    [project.entry-points."aligner.commands"]
    mytool = "my_package.commands"        # a module with add_commands(subparsers)

Their order in ``aligner --help`` is explicit: a module's ``HELP_ORDER`` (the built-ins use
10..80, in the order a user meets them: correct, generate, data, train, serve, demo, eval,
to-gguf; a module without one comes after them, at 1000), then built-ins before plug-ins, then the
entry point name. A plug-in that fails to import or to add its commands is logged and skipped (the
other commands work); a built-in that fails is an error, since it means a broken install.

Subcommand modules are imported only to build the parser (cheap: heavy libraries are imported by
the command's function when it runs), so ``aligner --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Any, Callable, Sequence

from .contracts.errors import AlignerError, ConfigError
from .contracts.registry import group_entry_points, is_built_in
from .runtime.progress import quiet_model_loading

log = logging.getLogger("aligner")

EXIT_CODES = """exit status:
  0    done
  2    an error you can fix: the message names the option (or file, row, field) and the fix
  3    aligner correct --input / aligner generate: the run finished but some rows failed (listed in OUTPUT.errors.jsonl;
       run the same command again to retry them)
  130  interrupted (Ctrl-C); results written so far are kept
"""

#: the entry point group of command modules (``add_commands(subparsers) -> None``; each parser sets
#: ``func=callable(args) -> int``).
GROUP = "aligner.commands"
#: where a command module without ``HELP_ORDER`` stands in ``aligner --help``: after the built-ins.
DEFAULT_HELP_ORDER = 1000


def command_adders() -> list[tuple[str, bool, Callable[[Any], None]]]:
    """(entry point name, whether built in, ``add_commands``) of every command module, in ``--help`` order. A plug-in
    that fails to load is logged and left out; a built-in that fails raises (a broken install)."""
    found = []
    for ep in group_entry_points(GROUP, "command"):
        built_in = is_built_in(ep)
        try:
            obj = ep.load()
            add = getattr(obj, "add_commands", None) if isinstance(obj, ModuleType) else obj
            if not callable(add):
                raise ConfigError(f"{ep.value} has no add_commands(subparsers) function.", field=GROUP,
                                  fix="name a module with add_commands, or the function itself.")
        except Exception as exc:
            if built_in:
                raise
            log.warning("%s entry point %r (%s) failed to load and is skipped: %s", GROUP, ep.name, ep.value, exc)
            continue
        module = obj if isinstance(obj, ModuleType) else sys.modules.get(getattr(obj, "__module__", ""))
        order = getattr(module, "HELP_ORDER", DEFAULT_HELP_ORDER)
        if not isinstance(order, int):  # a plug-in's typo must not break sorting every command
            log.warning("%s entry point %r: HELP_ORDER %r is not an integer; using %d.", GROUP, ep.name, order,
                        DEFAULT_HELP_ORDER)
            order = DEFAULT_HELP_ORDER
        found.append(((order, not built_in, ep.name), (ep.name, built_in, add)))
    return [adder for _, adder in sorted(found, key=lambda f: f[0])]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aligner", description="Correct any LLM's answers with an Aligner.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug information (and the library traceback behind an error)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, built_in, add in command_adders():
        _add_commands(sub, name, built_in, add)
    return parser


def _add_commands(sub: Any, name: str, built_in: bool, add: Callable[[Any], None]) -> None:
    """Run one module's ``add_commands``; a plug-in that fails (a name a built-in already has, a
    bug) is logged and its half-added commands taken back out, so the CLI works without it."""
    commands, helps = dict(sub.choices), list(sub._choices_actions)
    try:
        add(sub)
        # Python 3.11+ refuses a second parser of the same name; 3.10 would silently replace it
        taken = sorted(n for n, p in commands.items() if sub.choices.get(n) is not p)
        if taken:
            raise ConfigError(f"it replaced the command(s) {', '.join(taken)}.", field=GROUP,
                              fix="give the plug-in's commands names of their own.")
    except Exception as exc:
        if built_in:
            raise
        log.warning("%s entry point %r failed to add its commands and is skipped: %s", GROUP, name, exc)
        sub.choices.clear()
        sub.choices.update(commands)
        sub._choices_actions[:] = helps


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except AlignerError as exc:  # aligner-kit's own commands missing: the message says how to install it
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
