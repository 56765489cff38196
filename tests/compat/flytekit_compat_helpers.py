"""Shared by the flytekit drop-in tests: serialize real flytekit plugin tasks, and run our host with our packages.

These tests need the flytekit plugins (flytekitplugins-bigquery, -snowflake, -spark, -awssagemaker, -openai), so
they run in their own environment: ``nox -s compat-flytekit``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flyteidl.core import tasks_pb2

from flyteconnectors.core.dispatcher import DispatcherOptions, RetryPolicy
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.testing.host import HostThread

QUEUED, RUNNING, SUCCEEDED, ABORTED, FAILED, INITIALIZING, WAITING, RETRYABLE = 1, 2, 3, 4, 5, 6, 7, 8
PROJECT, DOMAIN = "flytesnacks", "development"
IMAGE = "ghcr.io/example/flyte-task:v1"


def settings() -> Any:
    from flytekit.configuration import Image, ImageConfig, SerializationSettings

    return SerializationSettings(
        project=PROJECT, domain=DOMAIN, version="v1",
        image_config=ImageConfig(default_image=Image(name="default", fqn=IMAGE.rsplit(":", 1)[0], tag="v1")),
    )


def serialize(task: Any) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate ``pyflyte register`` sends to FlyteAdmin for a flytekit task, as Propeller hands it on."""
    from flytekit.tools.translator import get_serializable

    spec = get_serializable(OrderedDict(), settings(), task)
    return spec.template.to_flyte_idl()  # type: ignore[no-any-return]


@contextmanager
def our_host(package: str, package_settings: Mapping[str, Any], secrets: Mapping[str, str] | None = None,
             ) -> Iterator[HostThread]:
    """Our host serving the installed package ``package`` exactly as ``flyteconnectors serve`` discovers it (its
    entry point), with ``package_settings`` pointing it at the package's fake."""
    registry = Registry.discover(enabled=[package], settings_source=lambda name: dict(package_settings))
    assert registry.packages[package].loaded, registry.packages[package].error
    with HostThread(registry=registry, secrets=dict(secrets or {}),
                    options=DispatcherOptions(retry=RetryPolicy(attempts=3, base=0.01, cap=0.05))) as host:
        yield host
