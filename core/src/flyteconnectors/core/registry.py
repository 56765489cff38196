"""Discovery of installed connectors through the ``flyteconnectors`` entry-point group.

Each connector package declares one entry point, named after the package::

    [project.entry-points.flyteconnectors]
    snowflake = "flyteconnectors.snowflake.connector:CONNECTORS"

Loading it imports the connector module only; service SDKs are imported on first use, so the host starts
fast. A package whose core requirement is not met, that fails to import, or that repeats a task type
already served is reported with its reason and skipped. It never takes the host down.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from flyteconnectors.core.clients import ClientCache
from flyteconnectors.core.connector import Connector
from flyteconnectors.core.errors import ConnectorNotFound

log = logging.getLogger("flyteconnectors.registry")

GROUP = "flyteconnectors"
CORE_DIST = "flyteconnectors-core"


@dataclass
class PackageEntry:
    """One installed connector package and what became of it."""

    package: str
    distribution: str = ""
    version: str = ""
    requires_core: str = ""
    connectors: list[type[Connector[Any]]] = field(default_factory=list)
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class TaskCategory:
    name: str
    version: int = 0


def core_version() -> str:
    try:
        return metadata.version(CORE_DIST)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _core_requirement(dist: metadata.Distribution | None) -> str:
    if dist is None:
        return ""
    for raw in dist.requires or ():
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.name == CORE_DIST and not req.marker:
            return str(req.specifier)
    return ""


class Registry:
    """Task categories to connector classes, and lazily built connector instances."""

    def __init__(self, settings_source: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self.packages: dict[str, PackageEntry] = {}
        self._by_category: dict[TaskCategory, type[Connector[Any]]] = {}
        self._instances: dict[type[Connector[Any]], Connector[Any]] = {}
        self._package_of: dict[type[Connector[Any]], str] = {}
        self._clients: dict[str, ClientCache] = {}
        self._settings_source = settings_source or (lambda package: {})
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ discovery
    @classmethod
    def discover(
        cls,
        enabled: Iterable[str] | None = None,
        settings_source: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> Registry:
        registry = cls(settings_source)
        wanted = set(enabled) if enabled else None
        installed_core = Version(core_version())
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            dist = getattr(ep, "dist", None)
            entry = PackageEntry(
                ep.name,
                distribution=dist.metadata["Name"] if dist else "",
                version=dist.version if dist else "",
                requires_core=_core_requirement(dist),
            )
            registry.packages[ep.name] = entry
            if entry.requires_core:
                spec = Requirement(f"{CORE_DIST}{entry.requires_core}").specifier
                if not spec.contains(installed_core, prereleases=True):
                    entry.error = (
                        f"needs {CORE_DIST}{entry.requires_core} but {installed_core} is installed; "
                        f"upgrade {CORE_DIST} or pin {entry.distribution} to an older release"
                    )
                    log.error("connector package %s skipped: %s", ep.name, entry.error)
                    continue
            try:
                loaded = ep.load()
            except Exception as err:  # a broken package must never take the host down
                entry.error = f"failed to import {ep.value}: {type(err).__name__}: {err}"
                log.error("connector package %s skipped: %s", ep.name, entry.error)
                continue
            classes = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
            registry._add(entry, classes)
        if wanted:
            for name in sorted(wanted - set(registry.packages)):
                registry.packages[name] = PackageEntry(name, error="enabled in configuration but not installed")
                log.error("connector package %s is enabled but not installed", name)
        return registry

    def register(self, *classes: type[Connector[Any]], package: str = "local") -> PackageEntry:
        """Register connector classes directly (tests, embedding)."""
        entry = self.packages.setdefault(package, PackageEntry(package))
        self._add(entry, list(classes))
        return entry

    def register_module(self, module: str, attr: str = "CONNECTORS", package: str | None = None) -> PackageEntry:
        """Import ``module`` and register ``module.attr`` (a connector class or a tuple of them).

        A module that fails to import is recorded on its package entry and skipped, as for entry points.
        """
        package = package or package_of(module)
        entry = self.packages.get(package) or PackageEntry(package, distribution=f"module {module}")
        self.packages[package] = entry
        try:
            loaded = getattr(importlib.import_module(module), attr)
        except Exception as err:
            entry.error = f"failed to import {module}:{attr}: {type(err).__name__}: {err}"
            log.error("connector package %s skipped: %s", package, entry.error)
            return entry
        classes = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
        self._add(entry, classes)
        return entry

    def _add(self, entry: PackageEntry, classes: list[Any]) -> None:
        problems = []
        accepted = []
        for item in classes:
            if not (isinstance(item, type) and issubclass(item, Connector)):
                problems.append(f"{item!r} is not a Connector subclass")
                continue
            klass: type[Connector[Any]] = item
            missing = [a for a in ("name", "task_type", "config_model") if not hasattr(klass, a)]
            if missing:
                problems.append(f"{klass.__name__} does not declare {', '.join(missing)}")
                continue
            category = TaskCategory(klass.task_type, klass.task_version)
            holder = self._by_category.get(category)
            if holder is not None and holder is not klass:
                problems.append(
                    f"task type {category.name!r} v{category.version} of {klass.__name__} is already served by "
                    f"{holder.__name__} from package {self._package_of[holder]!r}"
                )
                continue
            accepted.append((category, klass))
        if problems:
            entry.error = "; ".join(problems)
            log.error("connector package %s skipped: %s", entry.package, entry.error)
            return
        for category, klass in accepted:
            # The package is the registry's knowledge, not the class's: one class may be registered by several
            # registries (tests, embedding) under different package names.
            self._package_of[klass] = entry.package
            self._by_category[category] = klass
            entry.connectors.append(klass)

    # ------------------------------------------------------------------ lookup
    def categories(self) -> list[tuple[TaskCategory, type[Connector[Any]]]]:
        return sorted(self._by_category.items(), key=lambda kv: (kv[0].name, kv[0].version))

    def connector_class(self, task_type: str, version: int = 0) -> type[Connector[Any]]:
        klass = self._by_category.get(TaskCategory(task_type, version))
        if klass is None:
            served = ", ".join(f"{c.name} v{c.version}" for c in self._by_category) or "none"
            raise ConnectorNotFound(
                f"no connector serves task type {task_type!r} version {version} (this host serves: {served})"
            )
        return klass

    def get(self, task_type: str, version: int = 0) -> Connector[Any]:
        klass = self.connector_class(task_type, version)
        instance = self._instances.get(klass)
        if instance is not None:
            return instance
        with self._lock:
            instance = self._instances.get(klass)
            if instance is None:
                package = self._package_of[klass]
                settings = klass.settings_model.load(package, self._settings_source(package))
                clients = self._clients.setdefault(package, ClientCache())
                instance = klass(settings, clients)
                instance.package = package
                self._instances[klass] = instance
        return instance

    def package_of(self, klass: type[Connector[Any]]) -> str:
        return self._package_of[klass]

    def instances(self) -> list[Connector[Any]]:
        return list(self._instances.values())

    def client_caches(self) -> list[ClientCache]:
        return list(self._clients.values())


def package_of(module: str) -> str:
    """The package name (settings prefix ``FLYTECONNECTORS_<PACKAGE>_``) of a connector module.

    ``flyteconnectors.snowflake.connector`` -> ``snowflake``; ``mypkg.connector`` -> ``mypkg``.
    """
    parts = module.split(".")
    if parts[0] == "flyteconnectors" and len(parts) > 1:
        return parts[1]
    return parts[0]


def register_modules(registry: Registry, spec: str) -> list[PackageEntry]:
    """Register connector modules named in ``spec`` (the ``FLYTECONNECTORS_MODULES`` syntax).

    ``spec`` is a comma-separated list of ``[package=]module[:attribute]``; the attribute defaults to
    ``CONNECTORS`` and the package to :func:`package_of` the module. This serves connectors that are not
    installed as a distribution (a module in the working directory, tests) without entry points.
    """
    entries = []
    for item in spec.split(","):
        if not item.strip():
            continue
        try:
            package, module, attr = parse_module_spec(item)
        except ValueError as err:
            entry = registry.packages[item.strip()] = PackageEntry(item.strip(), error=str(err))
            log.error("%s", err)
            entries.append(entry)
            continue
        entries.append(registry.register_module(module, attr, package))
    return entries


def parse_module_spec(spec: str) -> tuple[str, str, str]:
    """``[package=]pkg.mod[:ATTR]`` -> (package, module, attribute), as ``FLYTECONNECTORS_MODULES`` reads it."""
    package, _, target = spec.strip().rpartition("=")
    module, _, attr = target.partition(":")
    module = module.strip()
    if not module:
        raise ValueError(f"connector module {spec!r}: expected '[package=]pkg.mod[:ATTR]'")
    return package.strip() or package_of(module), module, attr.strip() or "CONNECTORS"
