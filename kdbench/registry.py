"""One small registry mechanism for every name a config or a record can say (DESIGN.md): a
:class:`Registry` maps names to objects that their defining modules add with a decorator, is filled
lazily (the modules it names are imported on the first lookup, so listing a registry stays light),
and answers an unknown name with one line that suggests the closest known ones.

Names may be *templates* with ``{field}`` placeholders (``ndcg_at_{k}``): a lookup of ``ndcg_at_10``
finds the template and returns its fields (``{"k": "10"}``). A field matches one or more of
``[0-9a-z_]`` (``{k}`` of ``recall_at_{k}`` is checked by whoever reads it).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from kdbench.errors import KdbenchError

T = TypeVar("T")
_FIELD = re.compile(r"\{([a-z_]+)\}")


def _template_regex(name: str) -> re.Pattern | None:
    if not _FIELD.search(name):
        return None
    parts, pos = [], 0
    for m in _FIELD.finditer(name):
        parts += [re.escape(name[pos:m.start()]), f"(?P<{m.group(1)}>[0-9a-z_]+?)"]
        pos = m.end()
    return re.compile("^" + "".join(parts) + re.escape(name[pos:]) + "$")


def unknown_name(what: str, name: str, known: Sequence[str], where: str = "") -> str:
    """The one line for a name that is not registered: where, the closest known names, all of them."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{where + ': ' if where else ''}unknown {what} {name!r}{hint} (known: {', '.join(known)})"


class Registry(Generic[T]):
    """``what`` names the entries in messages ("metric", "loss"); on the first lookup the
    ``modules`` are imported in order, then every other module of the ``packages`` (their
    decorators fill the registry: a new module in such a package needs no other edit)."""

    def __init__(self, what: str, modules: Sequence[str] = (), packages: Sequence[str] = ()):
        self.what = what
        self._modules, self._packages = list(modules), list(packages)
        self._entries: dict[str, T] = {}
        self._templates: dict[str, re.Pattern] = {}
        self._loaded = not (self._modules or self._packages)

    # filling ------------------------------------------------------------------------------------
    def add(self, name: str, obj: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj
        regex = _template_regex(name)
        if regex is not None:
            self._templates[name] = regex
        return obj

    def registered(self, name: str) -> T:
        """The entry added under exactly ``name``, without importing the registry's modules (for the
        modules that are filling it)."""
        return self._entries[name]

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` adds the decorated object under ``name``."""
        return lambda obj: self.add(name, obj)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
            for package in self._packages:
                path = importlib.import_module(package).__path__
                for info in pkgutil.iter_modules(path):
                    importlib.import_module(f"{package}.{info.name}")

    # lookup -------------------------------------------------------------------------------------
    def find(self, name: str, templates: bool = True) -> tuple[T, dict[str, str]] | None:
        """``(object, template fields)`` for ``name``, or None; exact names win over templates."""
        self._load()
        if name in self._entries:
            return self._entries[name], {}
        for template, regex in self._templates.items() if templates else ():
            m = regex.match(name)
            if m:
                return self._entries[template], m.groupdict()
        return None

    def get(self, name: str, where: str = "") -> T:
        found = self.find(name)
        if found is None:
            raise KdbenchError(self.unknown(name, where))
        return found[0]

    def unknown(self, name: str, where: str = "") -> str:
        return unknown_name(self.what, name, self.names(), where)

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
