"""A typed facade over pluggy's PluginManager.

Core code never calls ``pm.hook.*`` directly: it asks this module for a component by kind and
name. Plugins come from the ``mtlkit`` entry-point group (the bundled ones too) and from
:meth:`PluginManager.register` (tests, notebooks).

Environment variables (comma-separated entry-point or distribution names):

``MTLKIT_BLOCK_PLUGINS``
    never load these.
``MTLKIT_LOAD_PLUGINS``
    load only these (use ``mtlkit`` to keep the bundled plugins).

A plugin that fails to import, or whose registration hook raises, is reported with a
:class:`PluginLoadWarning` naming its distribution and the exception; every other plugin still
loads. A name provided by two plugins is an error naming both providers, raised when that name
is asked for (other names keep working) and shown by ``mtlkit plugins``.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pluggy

from mtlkit import hookspecs
from mtlkit.errors import ConfigError, PluginError, unknown_name

ENTRY_POINT_GROUP = "mtlkit"
BLOCK_ENV = "MTLKIT_BLOCK_PLUGINS"
ALLOW_ENV = "MTLKIT_LOAD_PLUGINS"

#: kind -> the registration hook that provides it
KINDS: dict[str, str] = {
    "aggregator": "register_aggregators",
    "mask": "register_mask_strategies",
    "probe": "register_conflict_probes",
    "head": "register_task_heads",
    "backbone": "register_backbones",
    "benchmark": "register_benchmarks",
    "transform": "register_model_transforms",
}


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or registered; the others still work."""


@attrs.frozen
class Registration:
    """One named component and who provides it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def provider(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "registered in code"
        return f"plugin {self.plugin!r} ({dist})"

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


@attrs.frozen
class PluginInfo:
    """What ``mtlkit plugins`` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    provides: dict[str, tuple[str, ...]]
    error: str | None = None


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _valid_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise PluginError(f"invalid {kind} name {name!r}: use letters, digits and '_'")
    return name.lower()


class PluginManager:
    """Loads plugins once and answers lookups by kind and name."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.RLock()
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self._errors: dict[str, str] = {}
        self._registry: dict[str, dict[str, list[Registration]]] | None = None

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load entry-point plugins (idempotent)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._load_entry_points:
                self._load_from_entry_points()

    def _load_from_entry_points(self) -> None:
        blocked = _env_names(BLOCK_ENV) or set()
        allowed = _env_names(ALLOW_ENV)
        eps = list(md.entry_points(group=ENTRY_POINT_GROUP))
        if allowed is not None:
            known = {ep.name for ep in eps} | {ep.dist.name for ep in eps if ep.dist is not None}
            unknown = sorted(allowed - known)
            if unknown:  # a typo here would otherwise silently load nothing
                raise PluginError(
                    f"invalid {ALLOW_ENV}={os.environ.get(ALLOW_ENV)!r}: no installed plugin or "
                    f"distribution named {unknown[0]!r}; installed: {', '.join(sorted(known))}")
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            keys = {ep.name, dist} - {None}
            if keys & blocked or (allowed is not None and not keys & allowed):
                continue
            plugin_name = ep.name if ep.name not in self._dists else f"{dist}:{ep.name}"
            try:
                module = ep.load()
                self._pm.register(module, name=plugin_name)
            except Exception as exc:  # a broken third-party plugin must not take down the rest
                self._errors[plugin_name] = f"{type(exc).__name__}: {exc}"
                self._dists[plugin_name] = (dist, version)
                warnings.warn(
                    f"mtlkit plugin {ep.name!r} from distribution {dist!r} failed to load "
                    f"({type(exc).__name__}: {exc}); the other plugins are unaffected",
                    PluginLoadWarning,
                    stacklevel=2,
                )
                continue
            self._dists[plugin_name] = (dist, version)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module in code; returns its plugin name."""
        self.load()
        with self._lock:
            registered = self._pm.register(plugin, name=name)
            if registered is None:
                raise PluginError(f"plugin {name!r} is blocked or already registered")
            self._dists.setdefault(registered, (None, None))
            self._registry = None
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self._pm.unregister(name=name)
            self._dists.pop(name, None)
            self._registry = None

    @contextmanager
    def temporary(self, plugin: object, name: str | None = None) -> Iterator[str]:
        """Register ``plugin`` for the duration of a ``with`` block (tests, notebooks)."""
        registered = self.register(plugin, name)
        try:
            yield registered
        finally:
            self.unregister(registered)

    # -- registry -----------------------------------------------------------------------------

    def _build_registry(self) -> dict[str, dict[str, list[Registration]]]:
        registry: dict[str, dict[str, list[Registration]]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                dist, version = self._dists.get(impl.plugin_name, (None, None))

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    _kind: str = kind,
                    _plugin: str = impl.plugin_name,
                    _dist: str | None = dist,
                    _version: str | None = version,
                ) -> None:
                    key = _valid_name(_kind, name)
                    if not callable(factory):
                        raise PluginError(f"{_kind} {name!r}: factory {factory!r} is not callable")
                    reg = Registration(_kind, key, factory, _plugin, _dist, _version)
                    registry[_kind].setdefault(key, []).append(reg)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._errors[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
                    warnings.warn(
                        f"mtlkit plugin {impl.plugin_name!r} (distribution {dist!r}) raised in "
                        f"{hook_name}: {type(exc).__name__}: {exc}; its {kind}s are skipped",
                        PluginLoadWarning,
                        stacklevel=2,
                    )
        for kind, entries in registry.items():
            for name, regs in entries.items():
                if len(regs) > 1:
                    warnings.warn(_duplicate_message(kind, name, regs), PluginLoadWarning,
                                  stacklevel=2)
        return registry

    def _get_registry(self) -> dict[str, dict[str, list[Registration]]]:
        self.load()
        with self._lock:
            if self._registry is None:
                self._registry = self._build_registry()
            return self._registry

    def names(self, kind: str) -> list[str]:
        """Sorted names available for ``kind``."""
        return sorted(self._get_registry()[_check_kind(kind)])

    def registration(self, kind: str, name: str) -> Registration:
        """The unique registration of ``name``; errors list the alternatives or both providers."""
        entries = self._get_registry()[_check_kind(kind)]
        key = name.lower() if isinstance(name, str) else name
        regs = entries.get(key)
        if not regs:
            raise unknown_name(kind, str(name), entries)
        if len(regs) > 1:
            raise PluginError(_duplicate_message(kind, key, regs))
        return regs[0]

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Build the component ``name`` of ``kind`` from keyword parameters."""
        reg = self.registration(kind, name)
        _check_params(reg, params)
        try:
            return reg.factory(**params)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{kind} {reg.name!r}: {exc}") from exc

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin (and every plugin that failed), with what it registers."""
        registry = self._get_registry()
        infos = []
        for plugin_name, (dist, version) in sorted(self._dists.items()):
            plugin = self._pm.get_plugin(plugin_name)
            hooks = tuple(sorted(c.name for c in self._pm.get_hookcallers(plugin) or []))
            provides = {
                kind: tuple(sorted(name for name, regs in entries.items()
                                   if any(r.plugin == plugin_name for r in regs)))
                for kind, entries in registry.items()
            }
            provides = {kind: names for kind, names in provides.items() if names}
            infos.append(PluginInfo(plugin_name, dist, version, hooks, provides,
                                    self._errors.get(plugin_name)))
        return infos

    def conflicts(self) -> list[str]:
        return [
            _duplicate_message(kind, name, regs)
            for kind, entries in self._get_registry().items()
            for name, regs in sorted(entries.items())
            if len(regs) > 1
        ]


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
    return kind


def _duplicate_message(kind: str, name: str, regs: list[Registration]) -> str:
    providers = " and ".join(r.provider for r in regs)
    return (f"{kind} {name!r} is registered twice: by {providers}; "
            f"block one with {BLOCK_ENV}=<plugin or distribution>")


def _check_params(reg: Registration, params: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(reg.factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n, p in sig.parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise PluginError(
            f"{reg.kind} {reg.name!r} has no parameter {unknown[0]!r}; parameters: {allowed}"
        )


_default: PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginManager()
        return _default


def reset_plugin_manager() -> None:
    """Forget loaded plugins, so the next lookup re-reads entry points and env variables."""
    global _default
    with _default_lock:
        _default = None
