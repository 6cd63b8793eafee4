"""Open registries: how a spec (``"openai/gpt-4o-mini"``, ``"hf:./model"``, a URL, a client
object, ...) becomes an upstream or a corrector, without a central if-chain.

Each provider class says itself which specs it takes: a ``matches(spec)`` classmethod and a
``from_spec(spec, ...)`` factory, registered with :meth:`Registry.register` (used as a class
decorator in the provider's own module). A third-party package adds a provider the same way, as
one module named in a Python entry point group (``aligner.upstreams``, ``aligner.correctors`` or
``aligner.gates``)
in its ``pyproject.toml``::

    [project.entry-points."aligner.upstreams"]
    myprovider = "my_package.upstream:MyUpstream"

The entry point may name the class (it is registered) or a module whose import registers it.
Entry points load on the first lookup, never at ``import aligner``, so a broken plug-in cannot
break the import and a plain ``import aligner`` stays light.
"""
from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

log = logging.getLogger("aligner")
C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Provider classes in the order specs are tried: higher ``spec_priority`` first, then the
    order they were registered (built-ins before plug-ins). A catch-all (any other string is a
    LiteLLM model; any other callable is a function upstream) has a low priority, so a plug-in's
    own prefix is tried before it."""

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...]):
        self.kind, self.group = kind, group
        self._builtins = builtins  # modules whose import registers the built-in providers
        self._classes: list[C] = []
        self._loaded = False
        # two threads building their first Aligner at once: the second waits for the built-ins
        # and plug-ins instead of seeing a half-filled registry ("no provider takes this spec")
        self._lock = threading.RLock()

    def register(self, cls: C) -> C:
        """Add ``cls`` (it needs ``matches`` and ``from_spec`` classmethods); returns it, so this
        serves as a class decorator. Registering a class twice keeps it once."""
        for name in ("matches", "from_spec"):
            if not callable(getattr(cls, name, None)):
                raise ConfigError(f"{cls!r} has no {name}() classmethod.", field=self.kind,
                                  fix=f"define matches(spec) and from_spec(spec, ...) on the {self.kind} class.")
        if cls not in self._classes:
            self._classes.append(cls)
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:  # loaded while this thread waited
                return
            for module in self._builtins:  # their import registers them (re-entrant: the lock is an RLock)
                importlib.import_module(module)
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plug-in must not break every other provider
                    log.warning("%s entry point %r (%s) failed to load: %s", self.group, ep.name, ep.value, exc)
                    continue
                if isinstance(obj, type):
                    self.register(obj)  # type: ignore[arg-type]
            self._loaded = True

    def __iter__(self) -> Iterator[C]:
        self._load()
        order = sorted(range(len(self._classes)),
                       key=lambda i: (-getattr(self._classes[i], "spec_priority", 0), i))
        return iter([self._classes[i] for i in order])

    def find(self, spec: Any) -> C | None:
        """The first registered class that takes ``spec``."""
        return next((cls for cls in self if cls.matches(spec)), None)

    def build(self, spec: Any, *args: Any, otherwise: Callable[[], Exception], **kw: Any) -> Any:
        """``from_spec(spec, ...)`` of the class that takes ``spec``; raises ``otherwise()`` if none does."""
        cls = self.find(spec)
        if cls is None:
            raise otherwise()
        return cls.from_spec(spec, *args, **kw)


#: upstream provider classes (:class:`aligner.adapters.base.Upstream` subclasses).
UPSTREAMS: Registry = Registry("upstream", "aligner.upstreams", (
    "aligner.adapters.openai_compatible", "aligner.adapters.hf_local", "aligner.adapters.openai_api",
    "aligner.adapters.callable", "aligner.adapters.litellm_api"))

#: corrector backend classes (:class:`aligner.correctors.base.Corrector` subclasses).
CORRECTORS: Registry = Registry("corrector", "aligner.correctors", (
    "aligner.correctors.remote", "aligner.correctors.llamacpp", "aligner.correctors.local"))

#: gate kinds (:class:`aligner.gates.base.Gate` subclasses): what decides an answer needs the corrector.
GATES: Registry = Registry("gate", "aligner.gates", (
    "aligner.gates.moderation", "aligner.gates.classifier", "aligner.gates.cost", "aligner.gates.callable"))

register_upstream = UPSTREAMS.register
register_corrector = CORRECTORS.register
register_gate = GATES.register
