"""The core contract suite, adopted for both OpenAI task types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteconnectors.core import Phase
from flyteconnectors.core.testing import builders
from flyteconnectors.core.testing.contract import AsyncContract, SyncContract
from flyteconnectors.openai.connector import OpenAIBatch, OpenAIChat
from flyteconnectors.openai.fake import OpenAIFake


class _OpenAIFixtures:
    @pytest.fixture
    def fake(self) -> Iterator[OpenAIFake]:
        with OpenAIFake() as fake:
            yield fake  # type: ignore[misc]

    @pytest.fixture
    def connector_settings(self, fake: OpenAIFake, tmp_path: Path) -> dict[str, Any]:
        # Propeller's output prefix in these cases is an s3:// URI; result files go to a local folder instead.
        return {"base_url": f"{fake.url}/v1", "results_prefix": str(tmp_path)}

    @pytest.fixture
    def secrets(self, canary: str) -> dict[str, str]:
        return {"openai_api_key": canary, "openai_organization": canary, "openai_project": canary}


class TestOpenAIChat(_OpenAIFixtures, SyncContract):
    connector = OpenAIChat
    request_path = r"/chat/completions$"
    task_inputs = {"text": "hello"}

    @pytest.fixture
    def task_template(self) -> Any:
        return builders.task_template(
            "openai-chat",
            {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "{{ .inputs.text }}"}]},
            inputs={"text": str}, outputs={"answer": str},
        )


def _failed(message: str) -> dict[str, Any]:
    return {"status": "failed", "errors": [{"code": "invalid_request", "message": message, "line": None}]}


class TestOpenAIBatch(_OpenAIFixtures, AsyncContract):
    connector = OpenAIBatch
    task_inputs = {"prompts": ["one", "two"]}
    create_path = r"/v1/batches$"
    status_path = r"/v1/batches/batch_[^/]+$"
    status_method = "GET"
    success_steps = ("validating", "in_progress", "finalizing", "completed")
    running_steps = ("in_progress",)
    unknown_steps = ("paused_by_operator", "completed")
    state_cases = [
        (("validating",), Phase.INITIALIZING),
        (("in_progress",), Phase.RUNNING),
        (("finalizing",), Phase.RUNNING),
        (("completed",), Phase.SUCCEEDED),
        (("failed",), Phase.FAILED),
        (("expired",), Phase.FAILED),
        (("cancelling",), Phase.RUNNING),
        (("cancelled",), Phase.ABORTED),
    ]

    def failure_steps(self, message: str) -> tuple[Any, ...]:
        return ("validating", "in_progress", _failed(message))

    def early_failure_steps(self, message: str) -> tuple[Any, ...]:
        return (_failed(message),)

    def remote_jobs(self, fake: OpenAIFake) -> int:  # type: ignore[override]
        return fake.batch_count()

    def cancelled_jobs(self, fake: OpenAIFake) -> int:  # type: ignore[override]
        return sum(1 for b in fake.batches.values() if b["cancelling_at"] is not None)

    @pytest.fixture
    def task_template(self) -> Any:
        return builders.task_template(
            "openai-batch-job", {"model": "gpt-4o-mini"}, inputs={"prompts": list[str]},
            outputs={"output_file": builders.FILE, "error_file": builders.FILE, "request_counts": dict[str, int]},
        )
