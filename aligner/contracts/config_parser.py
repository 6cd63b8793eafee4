"""One config dataclass per job: its fields are the Python API, the CLI flags and the YAML keys.

Field ``metadata={"help": ...}`` is the ``--help`` text (the trl pattern). ``--config FILE.yaml``
fills fields first; flags given on the command line override the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *,
                            skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field; defaults are left as ``SUPPRESS`` so YAML values are not clobbered."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, _ = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        if default is not None and default != "":
            help_text = f"{help_text} (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "help": help_text, "default": argparse.SUPPRESS}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.metadata.get("action") == "append":  # given several times: --corrector A --corrector B
            kw.update(action="append", type=str)
        elif tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            inner = (typing.get_args(tp) or (str,))[0]
            kw.update(nargs="+", type=inner if inner in (int, float) else str)
        elif tp in (int, float):
            kw["type"] = tp
        else:
            kw["type"] = str
        # a field may name shorter spellings too (``--out`` for ``--output-dir``)
        parser.add_argument(_flag(f.name), *f.metadata.get("aliases", ()), **kw)


def add_config_command(sub: Any, name: str, cls: type, func: Any, *, help: str, description: str,
                       epilog: str | None = None, skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A subcommand whose flags are ``cls``'s fields, plus ``--config FILE.yaml`` (flags override it)."""
    p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with any of the options below (flags override it)")
    add_dataclass_arguments(p, cls, skip=skip)
    p.set_defaults(func=func)
    return p


def build_config(cls: type[C], args: argparse.Namespace | dict[str, Any] | None = None,
                 config_file: "str | Path | None" = None) -> C:
    """Instantiate ``cls`` from a YAML file (optional) overridden by parsed flags."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_yaml(config_file))
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {config_file}.", field=unknown[0],
                          fix=f"valid keys are {sorted(names)}.")
    values.update({k: v for k, v in given.items() if k in names})
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(str(exc), field=cls.__name__, fix="see --help for the expected options.") from exc


def load_yaml(path: "str | Path") -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such file {str(p)!r}.", field="config", fix="pass an existing YAML file.")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of option: value.", field="config",
                          fix="write one 'key: value' per line.")
    return {k.replace("-", "_"): v for k, v in data.items()}
