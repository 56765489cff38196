"""What ``flyteconnectors sandbox`` runs for OpenAI: host cases against the fake, and the example workflow."""

from __future__ import annotations

import tempfile
from typing import Any

from flyteconnectors.core import Phase
from flyteconnectors.core.sandbox import SandboxCase, SandboxExample, SandboxSpec, examples_dir
from flyteconnectors.core.testing import builders
from flyteconnectors.openai.fake import OpenAIFake

BATCH_OUTPUTS = {"output_file": builders.FILE, "error_file": builders.FILE, "request_counts": dict[str, int]}


def _cases(fake: Any) -> list[SandboxCase]:
    chat = builders.task_template(
        "openai-chat",
        {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "{{ .inputs.text }}"}]},
        inputs={"text": str}, outputs={"answer": str})
    structured = builders.task_template(
        "openai-chat",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "{{ .inputs.text }}"}],
         "response_schema": {"type": "object", "properties": {"label": {"type": "string"}},
                             "required": ["label"], "additionalProperties": False}},
        inputs={"text": str}, outputs={"label": str})
    batch = builders.task_template("openai-batch-job", {"model": "gpt-4o-mini"}, inputs={"prompts": list[str]},
                                   outputs=BATCH_OUTPUTS)
    prompts = {"prompts": ["one", "two"]}
    failed = {"status": "failed", "errors": [{"code": "invalid_json_line", "line": 1, "message": "bad line"}]}
    return [
        SandboxCase("a chat completion", chat, {"text": "hello"}, sync=True),
        SandboxCase("a structured chat completion", structured, {"text": "hello"}, sync=True),
        SandboxCase("a batch of prompts", batch, prompts),
        SandboxCase("a batch the service rejects", batch, prompts, expect=Phase.FAILED,
                    script=("validating", failed)),
        SandboxCase("a running batch, cancelled", batch, prompts, script=("in_progress",), cancel=True),
    ]


def spec() -> SandboxSpec:
    folder = examples_dir(__file__)
    examples = [SandboxExample(folder / "openai_example.py", "review_pipeline")] if folder else []
    return SandboxSpec(
        package="openai",
        fake=OpenAIFake,
        # Propeller-shaped GetTask calls carry an s3:// output prefix; result files go to a local folder.
        settings=lambda fake: {"base_url": f"{fake.url}/v1",
                               "results_prefix": tempfile.mkdtemp(prefix="flyteconnectors-openai-")},
        secrets={"openai_api_key": "sk-sandbox-dummy"},
        cases=_cases,
        examples=examples,
        cancelled=lambda fake: sum(1 for b in fake.batches.values() if b["cancelling_at"] is not None),
    )
