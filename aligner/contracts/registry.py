"""Open registries: how a spec (``"openai/gpt-4o-mini"``, ``"hf:./model"``, a URL, a client
object, ...) becomes an upstream or a corrector, without a central if-chain.

Each provider class says itself which specs it takes: a ``matches(spec)`` classmethod (or a rule
several kinds share, ``matches = staticmethod(is_server_url)``) and a ``from_spec(spec, ...)``
factory. Providers are found through Python entry points, the built-in ones included:
aligner-kit's own ``pyproject.toml`` names each built-in class in the groups ``aligner.upstreams``,
``aligner.correctors`` and ``aligner.gates``, and a third-party package adds a provider the same
way::

    [project.entry-points."aligner.upstreams"]
    myprovider = "my_package.upstream:MyUpstream"

The entry point may name the class (it is registered) or a module whose import registers it
(``@register_upstream``). Entry points load on the first lookup, never at ``import aligner``, so a
broken plug-in cannot break the import and a plain ``import aligner`` stays light; a plug-in that
fails to load is logged and skipped, a built-in that fails to load is an error (a broken install).

The order specs are tried in is explicit: higher ``spec_priority`` first; at equal priority the
built-ins (aligner-kit's own entry points) before other packages' entry points, before classes
registered only in code (``REGISTRY.register(cls)``); then by entry point name (a class registered
in code: ``module.QualName``). So the order does not depend on which module happened to be
imported first, nor on the order a distribution's metadata lists its entry points.

The built-ins are found through the installed metadata only: imported from a source folder that
was never installed (or installed before these entry points existed), the first lookup raises a
:class:`~aligner.contracts.errors.ConfigError` saying to run ``pip install -e .``. No fallback scan of the
package: a source checkout without an install lacks ``aligner.adapters`` and ``aligner.train``
anyway (``pyproject.toml`` maps them from the top-level ``adapters/`` and ``train/``).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("aligner")
C = TypeVar("C", bound=type)

#: the distribution whose entry points are the built-ins (tried before plug-ins at equal priority).
DISTRIBUTION = "aligner-kit"
#: where a class comes from, in the order ties are broken: built-in, plug-in, registered in code.
BUILT_IN, PLUG_IN, IN_CODE = 0, 1, 2


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_built_in(ep: "EntryPoint") -> bool:
    """Whether ``ep`` is declared by aligner-kit itself (not by a third-party package)."""
    dist = getattr(ep, "dist", None)
    return dist is not None and _normalized(dist.name) == DISTRIBUTION


def group_entry_points(group: str, kind: str) -> list["EntryPoint"]:
    """The entry points of ``group``, aligner-kit's own first, each part sorted by name (then
    value): a stable order whatever order the metadata lists them in. Raises a ConfigError when
    aligner-kit declares none there: its metadata is missing or older than the source."""
    from importlib.metadata import entry_points

    eps = sorted(entry_points(group=group), key=lambda ep: (not is_built_in(ep), ep.name, ep.value))
    if not any(is_built_in(ep) for ep in eps):
        where = _first_metadata()
        raise ConfigError(
            f"aligner-kit's built-in {kind}s were not found: its installed metadata declares no "
            f"'{group}' entry points (the package is imported from a source folder that was never "
            "installed, or was installed before these entry points existed"
            + (f"; the metadata read is {where}, which a build can leave stale in a source folder"
               if where else "") + ").", field=kind,
            fix="install the project in this environment: pip install -e . in the source folder "
                "(or pip install aligner-kit)" + (f", or delete {where} if it is a stale build folder"
                                                  if where and where.endswith(".egg-info") else "") + ".")
    return eps


def _first_metadata() -> str | None:
    """Where the aligner-kit metadata Python reads first lives (the one that shadows any other)."""
    from importlib.metadata import distributions

    for dist in distributions():
        if _normalized(dist.metadata["Name"] or "") == DISTRIBUTION:
            return str(getattr(dist, "_path", "") or "") or None
    return None


# -- spec rules more than one provider kind shares (a class uses one as ``matches = staticmethod(rule)``) --
def is_server_url(spec: Any) -> bool:
    """An ``http(s)://`` base URL, which names a server: an OpenAI-compatible chat upstream
    (``'http://localhost:8000/v1'``), a remote corrector (``'http://gpu-box:8000/v1'``)."""
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


def is_nonempty_string(spec: Any) -> bool:
    """Any string but an empty one: the rule of a catch-all (a LiteLLM model string, a corrector's
    hub id or directory), which a low ``spec_priority`` tries after every other provider."""
    return isinstance(spec, str) and bool(spec.strip())


class Registry(Generic[C]):
    """Provider classes in the order specs are tried (see the module docstring): higher
    ``spec_priority`` first, then built-ins, plug-ins, classes registered in code, then by name.
    A catch-all (any other string is a LiteLLM model; any other callable is a function upstream)
    has a low priority, so a plug-in's own prefix is tried before it."""

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._classes: list[C] = []
        #: class -> (origin, name): where the class was declared, for the order of ties
        self._origin: dict[C, tuple[int, str]] = {}
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
            named: set[type] = set()  # classes an entry point names itself: its name decides their place
            for ep in group_entry_points(self.group, self.kind):
                origin = BUILT_IN if is_built_in(ep) else PLUG_IN
                before = set(self._classes)
                try:
                    obj = ep.load()  # a module's import may register its classes itself (re-entrant: RLock)
                except Exception as exc:
                    if origin == BUILT_IN:  # aligner-kit's own provider: a broken install, not a plug-in to skip
                        raise
                    # a broken plug-in must not break every other provider
                    log.warning("%s entry point %r (%s) failed to load: %s", self.group, ep.name, ep.value, exc)
                    continue
                if isinstance(obj, type):
                    self.register(obj)  # type: ignore[arg-type]
                    if obj not in named:  # the first entry point naming a class decides (built-ins load first)
                        named.add(obj)
                        self._origin[obj] = (origin, ep.name)  # type: ignore[index]
                for cls in self._classes:  # registered by the import of an entry point's module
                    if cls not in before and cls not in self._origin:
                        self._origin[cls] = (origin, f"{ep.name}:{cls.__qualname__}")
            self._loaded = True

    def sort_key(self, cls: C) -> tuple[int, int, str]:
        """Where ``cls`` stands in the order specs are tried (lower first)."""
        origin, name = self._origin.get(cls, (IN_CODE, f"{cls.__module__}.{cls.__qualname__}"))
        return -getattr(cls, "spec_priority", 0), origin, name

    def __iter__(self) -> Iterator[C]:
        self._load()
        return iter(sorted(self._classes, key=self.sort_key))

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
UPSTREAMS: Registry = Registry("upstream", "aligner.upstreams")

#: corrector backend classes (:class:`aligner.correctors.base.Corrector` subclasses).
CORRECTORS: Registry = Registry("corrector", "aligner.correctors")

#: gate kinds (:class:`aligner.gates.base.Gate` subclasses): what decides an answer needs the corrector.
GATES: Registry = Registry("gate", "aligner.gates")

register_upstream = UPSTREAMS.register
register_corrector = CORRECTORS.register
register_gate = GATES.register
