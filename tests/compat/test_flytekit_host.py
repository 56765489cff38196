"""Installing our connector packages serves flytekit's task types too, and keeps the host's start-up light."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from flyteconnectors.core.registry import Registry
from flyteconnectors.core.testing.host import HostThread, PropellerClient

#: flytekit 1.16.31's connector task types (all version 0) and the package of ours that serves each.
FLYTEKIT_TASK_TYPES = {
    "bigquery_query_job_task": ("bigquery", False),
    "snowflake": ("snowflake", False),
    "databricks": ("databricks", False),
    "spark": ("databricks", False),
    "chatgpt": ("openai", True),
    "openai-batch": ("openai", False),
    "sagemaker-training-job": ("sagemaker", False),
    "sagemaker-processing-job": ("sagemaker", False),
    "sagemaker-transform-job": ("sagemaker", False),
    # Offered so that Propeller routes them here and the task fails with the reason, not "no connector".
    "boto": ("sagemaker", True),
    "sagemaker-endpoint": ("sagemaker", False),
    "sagemaker-training-task": ("sagemaker", False),
    "sagemaker-processing-task": ("sagemaker", False),
    "sagemaker-hyperparameter-tuning-job": ("sagemaker", False),
    "sagemaker-inference-recommender-job": ("sagemaker", False),
}
INSTALLED = {ep.name for ep in entry_points(group="flyteconnectors")}


def test_list_agents_offers_flytekits_task_types_from_the_installed_packages():
    wanted = sorted({package for package, _sync in FLYTEKIT_TASK_TYPES.values()} & INSTALLED)
    if not wanted:
        pytest.skip("no connector package installed")
    registry = Registry.discover(enabled=wanted)
    with HostThread(registry=registry, secrets={}) as host:
        agents = PropellerClient(host.channel).list_agents()

    offered = {(c.name, c.version): agent.is_sync for agent in agents for c in agent.supported_task_categories}
    for task_type, (package, is_sync) in FLYTEKIT_TASK_TYPES.items():
        if package in wanted:
            assert offered.get((task_type, 0)) is is_sync, f"{task_type} v0 is not offered as flytekit offered it"


@pytest.mark.parametrize("package", sorted({p for p, _ in FLYTEKIT_TASK_TYPES.values()}))
def test_loading_a_package_with_flytekits_task_types_imports_neither_flytekit_nor_the_sdk(package):
    if package not in INSTALLED:
        pytest.skip(f"flyteconnectors-{package} is not installed")
    heavy = ("flytekit", "flytekitplugins", "google.cloud.bigquery", "snowflake.connector", "databricks.sdk",
             "openai", "boto3", "botocore")
    # Modules loaded at interpreter start (plugins' namespace .pth files) are not the package's doing.
    code = (f"import sys; before = set(sys.modules); from flyteconnectors.{package}.connector import CONNECTORS; "
            "assert any(c.__module__.endswith('flytekit_compat') for c in CONNECTORS); "
            f"print(sorted(m for m in set(sys.modules) - before if m.startswith({heavy!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
