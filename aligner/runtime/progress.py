"""Which of the libraries' own progress bars (and noise) a user sees.

transformers draws a "Loading weights" bar on every model load, and ``datasets`` a bar for every
``map``/``filter`` a trainer runs over a few dozen pre-tokenised rows ("Truncating train dataset",
"Dropping fully masked examples"): on each ``aligner correct``, each ``Aligner(...)`` in a
notebook and each ``aligner train`` that is noise, so both are hidden by default — in the library
and the CLI alike. ``aligner --verbose`` (or ``quiet_model_loading(False)`` in Python) shows them.
Download bars (huggingface_hub's) and the training progress bar stay either way: a first download
of a 7B corrector and a training run are long work and show their progress. Only this module
touches those libraries' switches, so the behaviour has one place to change.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

_quiet_loading = True


def quiet_model_loading(quiet: bool = True) -> None:
    """Hide (``True``, the default) or show the per-load weight bar and the trainers' data-preparation
    bars in every later :func:`model_loading` / :func:`data_preparation`."""
    global _quiet_loading
    _quiet_loading = bool(quiet)


def _no_bar(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from transformers.utils.logging import EmptyTqdm

    return EmptyTqdm(*args, **kwargs)


@contextmanager
def model_loading() -> Iterator[None]:
    """Wrap a ``from_pretrained`` call: its "Loading weights" bar is hidden unless asked for.

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


#: deprecation warnings the training libraries raise about their own calls into each other (trl and
#: peft read ``model.is_gradient_checkpointing``, which transformers renamed): nothing a user can fix
_LIBRARY_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


@contextmanager
def data_preparation() -> Iterator[None]:
    """Wrap a trainer's construction and run: ``datasets``' map/filter bars are hidden unless asked
    for (the training bar is transformers' own and stays), and so are the libraries' warnings about
    each other's deprecated calls."""
    with warnings.catch_warnings():
        for message in _LIBRARY_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        if not _quiet_loading:
            yield
            return
        try:
            import datasets
        except ImportError:  # pragma: no cover - the train extra installs datasets
            yield
            return
        was_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            if was_on:
                datasets.enable_progress_bars()
