"""Which of the libraries' own progress bars a user sees.

transformers draws a "Loading weights" bar on every model load: in a notebook that is welcome, but
the CLI loads a corrector on every call, so the bar is noise on each ``aligner correct``. The CLI
turns it off unless ``--verbose`` (:func:`quiet_model_loading`); the library keeps transformers'
default. Download bars (huggingface_hub's) stay either way: a first download of a 7B corrector is
long work and shows its progress. Only this module touches transformers' tqdm switch, so the
behaviour has one place to change.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

_quiet_loading = False


def quiet_model_loading(quiet: bool = True) -> None:
    """Hide (``True``) or show transformers' per-load weight bar in every later :func:`model_loading`."""
    global _quiet_loading
    _quiet_loading = bool(quiet)


def _no_bar(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from transformers.utils.logging import EmptyTqdm

    return EmptyTqdm(*args, **kwargs)


@contextmanager
def model_loading() -> Iterator[None]:
    """Wrap a ``from_pretrained`` call: its "Loading weights" bar is hidden when the CLI asked so.

    Uses transformers' ``set_tqdm_hook``, which replaces only transformers' own bars; versions
    without it keep their bars.
    """
    if not _quiet_loading:
        yield
        return
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:
        yield
        return
    previous = set_hook(_no_bar)
    try:
        yield
    finally:
        set_hook(previous)
