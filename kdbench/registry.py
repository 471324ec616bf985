"""One small registry mechanism for every name a config or a record can say (DESIGN.md): a
:class:`Registry` maps names to objects that their defining modules add with a decorator
(``@LOSSES.register("forward_kl", level="logits", ...)``), answers an unknown name with one line
that suggests the closest known ones, and lists its names for the CLI and the generated docs.

A registry is filled lazily, in one of two ways:

* ``modules`` / ``packages``: on the first lookup those modules, then every module of those
  packages, are imported; their decorators fill the registry (the metric registry, whose
  decorators take functions as arguments).
* ``scan``: the modules of those packages are *read*, not imported: every decorator
  ``@SYMBOL.register("name", key=literal, ...)`` found at a module's top level becomes a lazy
  ``"module:object"`` entry with its literal keywords as metadata (:meth:`Registry.meta`). The
  module is imported only when the object itself is asked for (:meth:`Registry.get`), so listing
  names and validating a config never imports torch.

Either way a new entry is one decorated object in one file of a registered package: no list to
edit. The registries of kdbench's names are at the end of this module.

Names may be *templates* with ``{field}`` placeholders (``ndcg_at_{k}``): a lookup of ``ndcg_at_10``
finds the template and returns its fields (``{"k": "10"}``). A field matches one or more of
``[0-9a-z_]`` (``{k}`` of ``recall_at_{k}`` is checked by whoever reads it).
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

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


@dataclass
class _Lazy:
    """A scanned entry: where its object is defined, imported on first use."""

    module: str
    qualname: str

    def load(self) -> Any:
        obj = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj


def _is_register(node: ast.expr, symbol: str) -> bool:
    """``SYMBOL.register(...)`` or ``anything.SYMBOL.register(...)``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"):
        return False
    target = node.func.value
    return (isinstance(target, ast.Name) and target.id == symbol) or \
        (isinstance(target, ast.Attribute) and target.attr == symbol)


def scan_module(path: Path, module: str, symbol: str) -> list[tuple[str, str, dict]]:
    """``(name, object's name, literal keywords)`` of every ``@SYMBOL.register(...)`` decorator at the
    top level of the module's source, in source order, without importing it."""
    source = path.read_text(encoding="utf-8")
    if f"{symbol}.register" not in source:  # the common case: nothing to parse
        return []
    found = []
    for node in ast.parse(source, str(path)).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for deco in node.decorator_list:
            if not _is_register(deco, symbol):
                continue
            try:
                (name,) = [ast.literal_eval(a) for a in deco.args]
                meta = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
            except (ValueError, TypeError, SyntaxError):
                raise TypeError(f"{path}:{deco.lineno}: {symbol}.register takes one name and keywords that are "
                                "literals (the registry reads them without importing the module)") from None
            found.append((name, node.name, meta))
    return found


def _folders(package: str) -> list[str]:
    """Where a package's modules are, without importing it (kdbench's own: beside this file), so that
    reading ``kdbench.distill.losses`` for `kdbench eval`'s config validation imports nothing of it."""
    if package in sys.modules:
        return list(sys.modules[package].__path__)
    root, _, rest = package.partition(".")
    if root == __name__.partition(".")[0]:
        return [str(Path(__file__).resolve().parent.joinpath(*rest.split(".")))] if rest else []
    spec = importlib.util.find_spec(package)
    return list(spec.submodule_search_locations or ()) if spec else []


class Registry(Generic[T]):
    """``what`` names the entries in messages ("metric", "loss"). See the module docstring for
    ``modules`` / ``packages`` (imported on first lookup) and ``scan`` (read on first lookup for
    ``@symbol.register`` decorators, imported per entry on first use)."""

    def __init__(self, what: str, modules: Sequence[str] = (), packages: Sequence[str] = (), *,
                 scan: Sequence[str] = (), symbol: str | None = None, order: Callable[[str, dict], Any] | None = None):
        if scan and not symbol:
            raise ValueError("a scanned registry needs the symbol its decorators use")
        self.what, self.symbol, self._order = what, symbol, order
        self._modules, self._packages, self._scan = list(modules), list(packages), list(scan)
        self._entries: dict[str, T | _Lazy] = {}
        self._meta: dict[str, dict] = {}
        self._templates: dict[str, re.Pattern] = {}
        self._loaded = not (self._modules or self._packages or self._scan)

    # filling ------------------------------------------------------------------------------------
    def add(self, name: str, obj: T, **meta: Any) -> T:
        current = self._entries.get(name)
        if isinstance(current, _Lazy) and not isinstance(obj, _Lazy) and \
                (current.module, current.qualname) == (obj.__module__, obj.__qualname__):
            self._entries[name] = obj  # the scanned entry's module is being imported: the object itself
            return obj
        if current is not None:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj
        self._meta[name] = dict(meta)
        regex = _template_regex(name)
        if regex is not None:
            self._templates[name] = regex
        return obj

    def registered(self, name: str) -> T:
        """The entry added under exactly ``name``, without importing the registry's modules (for the
        modules that are filling it)."""
        return self._entries[name]

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", key=value...)`` adds the decorated object under
        ``name`` with its metadata (literals, in a scanned registry)."""
        return lambda obj: self.add(name, obj, **meta)

    def add_package(self, package: str) -> None:
        """Scan (or import, for an import-filled registry) one more package, e.g. a plugin's."""
        (self._scan if self.symbol else self._packages).append(package)
        if self._loaded:  # the others are in already: fill from this one only
            self._fill([], [] if self.symbol else [package], [package] if self.symbol else [])

    @contextmanager
    def extended(self, *packages: str):
        """The registry with ``packages`` added for the duration of the block (a plugin tried out,
        a test), then as it was."""
        self._load()
        saved = (dict(self._entries), dict(self._meta), dict(self._templates), list(self._scan), list(self._packages))
        try:
            for package in packages:
                self.add_package(package)
            yield self
        finally:
            self._entries, self._meta, self._templates, self._scan, self._packages = saved

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._fill(self._modules, self._packages, self._scan)

    def _fill(self, modules: Sequence[str], packages: Sequence[str], scan: Sequence[str]) -> None:
        for module in modules:
            importlib.import_module(module)
        for package in packages:
            path = importlib.import_module(package).__path__
            for info in pkgutil.iter_modules(path):
                importlib.import_module(f"{package}.{info.name}")
        for package in scan:
            for folder in _folders(package):
                for path in sorted(Path(folder).glob("*.py")):
                    module = package if path.stem == "__init__" else f"{package}.{path.stem}"
                    for name, qualname, meta in scan_module(path, module, self.symbol):
                        current = self._entries.get(name)
                        if current is not None and getattr(current, "__module__", getattr(current, "module", None)) \
                                == module:
                            # imported before the scan: already the object; moved to its place in the scan
                            # so that listings do not depend on what was imported first
                            self._entries[name] = self._entries.pop(name)
                            continue
                        self.add(name, _Lazy(module, qualname), **meta)

    # lookup -------------------------------------------------------------------------------------
    def _resolve(self, name: str) -> T:
        obj = self._entries[name]
        if isinstance(obj, _Lazy):
            loaded = obj.load()
            self._entries[name] = loaded
            return loaded
        return obj

    def find(self, name: str, templates: bool = True) -> tuple[T, dict[str, str]] | None:
        """``(object, template fields)`` for ``name``, or None; exact names win over templates."""
        self._load()
        if name in self._entries:
            return self._resolve(name), {}
        for template, regex in self._templates.items() if templates else ():
            m = regex.match(name)
            if m:
                return self._resolve(template), m.groupdict()
        return None

    def get(self, name: str, where: str = "") -> T:
        found = self.find(name)
        if found is None:
            raise KdbenchError(self.unknown(name, where))
        return found[0]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def meta(self, name: str, where: str = "") -> dict:
        """The keywords ``name`` was registered with (a scanned entry: without importing its module)."""
        self._load()
        if name not in self._meta:
            raise KdbenchError(self.unknown(name, where))
        return self._meta[name]

    def check(self, name: str, where: str = "") -> str:
        """``name`` if it is registered, else the one-line error (a ValueError, for validators)."""
        self._load()
        if name not in self._entries:
            raise ValueError(self.unknown(name, where))
        return name

    def unknown(self, name: str, where: str = "") -> str:
        return unknown_name(self.what, name, self.names(), where)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries or any(r.match(name) for r in self._templates.values())

    def names(self, **where: Any) -> list[str]:
        """Every name, in registration order (or the registry's ``order``); ``where``: only those whose metadata has these values."""
        self._load()
        names = list(self._entries)
        if self._order is not None:
            names.sort(key=lambda n: self._order(n, self._meta[n]))
        return [n for n in names if all(self._meta[n].get(k) == v for k, v in where.items())]

    def metas(self) -> list[tuple[str, dict]]:
        """``(name, metadata)`` of every entry, without importing anything."""
        return [(n, self._meta[n]) for n in self.names()]

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._resolve(n)) for n in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


# --------------------------------------------------------------------------------------------------
# kdbench's names (metric kinds and metrics: kdbench.metrics.spec.KINDS, the same mechanism)
# --------------------------------------------------------------------------------------------------
# task families: @FAMILIES.register("ner") on a Task class (kdbench.tasks.base.Task)
FAMILIES: Registry = Registry("family", scan=("kdbench.tasks",), symbol="FAMILIES")
# model heads: @HEADS.register("token_classification", auto_class=..., ...) on the head's inference backend
HEADS: Registry = Registry("head", scan=("kdbench.backends",), symbol="HEADS")
# inference engines of causal-LM tasks (eval.backend): @ENGINES.register("vllm", ...) on the engine class
ENGINES: Registry = Registry("engine", scan=("kdbench.backends",), symbol="ENGINES")
# distillation losses: @LOSSES.register("forward_kl", level="logits", description=..., args=...), listed
# by level. A level says what a loss compares, and the suite key that takes a loss of that level (a
# recipe's registration says which levels its head takes).
LOSS_LEVELS = {"logits": "distill.loss", "hidden": "distill.features", "attention": "distill.features",
               "embedding": "distill.loss", "ranking": "distill.loss"}
LOSSES: Registry = Registry("loss", scan=("kdbench.distill.losses",), symbol="LOSSES",
                            order=lambda name, meta: (list(LOSS_LEVELS).index(meta["level"]), name))
# training recipes, one per head: @RECIPES.register("causal_lm") on a kdbench.distill.recipes.base.Recipe
RECIPES: Registry = Registry("recipe", scan=("kdbench.distill.recipes",), symbol="RECIPES")
# student builders (student.builder): @BUILDERS.register("layer_selection", ...) on a builder function
BUILDERS: Registry = Registry("student builder", scan=("kdbench.models",), symbol="BUILDERS")
