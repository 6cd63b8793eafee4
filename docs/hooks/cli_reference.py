"""MkDocs hook: the CLI reference page is generated from the ``aligner`` command's argparse parser.

Why a hook and not a copied ``--help``: the reference cannot drift from the code. At build time
the marker ``<!-- aligner-cli-reference -->`` in a page is replaced by one section per command and
subcommand (usage, description, every positional and flag with its help, choices and default).

The parser is found through the ``aligner`` console-script entry point (the module it names must
expose ``build_parser()``), so the page follows the command wherever its module lives.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
from importlib.metadata import entry_points
from typing import Any, Iterator

MARKER = "<!-- aligner-cli-reference -->"
#: usage lines are wrapped at this width whatever the terminal building the site is.
WIDTH = 100


def build_parser() -> argparse.ArgumentParser:
    """The ``aligner`` command's parser, from the module its console-script entry point names."""
    (ep,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "aligner"]
    module = importlib.import_module(ep.value.split(":")[0])
    return module.build_parser()


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("aligner",), summary: str = ""
         ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every (command path, parser, one-line help) of the tree, depth first, in the order added."""
    yield path, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,), helps.get(name, ""))


def _cell(text: str) -> str:
    """Plain help text as one markdown table cell: no HTML, no emphasis, no column breaks."""
    text = " ".join(str(text).split())
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([*_\[\]`])", r"\\\1", text)


def _text_block(text: str) -> str:
    return "```text\n" + text.strip("\n") + "\n```\n"


def _value(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return " \\| ".join(f"`{c}`" for c in action.choices)
    metavar = formatter._format_args(action, action.dest.upper() if action.option_strings else action.dest)
    return f"`{metavar}`"


def _help(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    text = "" if not action.help or action.help == argparse.SUPPRESS else _cell(formatter._expand_help(action))
    return f"**required.** {text}".strip() if action.required and action.option_strings else text


def render_parser(path: tuple[str, ...], parser: argparse.ArgumentParser, summary: str) -> str:
    """One command's section: heading, usage, description, tables of positionals and options."""
    formatter = parser._get_formatter()
    depth = len(path)
    out = [f"{'#' * min(depth + 1, 4)} `{' '.join(path)}`\n"]
    if summary:
        out.append(f"{_cell(summary)}\n")
    usage = parser.format_usage().removeprefix("usage: ").splitlines()
    out.append(_text_block("\n".join([usage[0]] + [line.removeprefix(" " * 7) for line in usage[1:]])))
    if parser.description:  # one line: a paragraph; with examples or layout: as written
        one_line = "\n" not in parser.description.strip()
        out.append(f"{_cell(parser.description)}\n" if one_line else _text_block(parser.description))
    positionals, options, commands = [], [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            commands += [(name, helps.get(name, "")) for name in action.choices]
        elif action.option_strings:
            options.append(action)
        else:
            positionals.append(action)
    if commands:
        out.append("| command | what it does |\n| --- | --- |\n" + "".join(
            f"| `{' '.join(path + (name,))}` | {_cell(help_)} |\n" for name, help_ in commands))
    if positionals:
        out.append("| argument | value | help |\n| --- | --- | --- |\n" + "".join(
            f"| `{a.metavar or a.dest}` | {_value(a, formatter)} | {_help(a, formatter)} |\n" for a in positionals))
    if options:
        out.append("| option | value | help |\n| --- | --- | --- |\n" + "".join(
            f"| {', '.join(f'`{o}`' for o in a.option_strings)} | {_value(a, formatter)} | {_help(a, formatter)} |\n"
            for a in options))
    if parser.epilog:
        out.append(_text_block(parser.epilog))
    return "\n".join(out)


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference: every command and subcommand of ``aligner``, in the parser's order."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse wraps usage at the terminal's width
    try:
        parser = parser or build_parser()
        return "\n".join(render_parser(path, p, summary) for path, p, summary in walk(parser))
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
