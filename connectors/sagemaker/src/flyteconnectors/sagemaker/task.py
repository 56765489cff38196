"""flytekit task types for workflow authors: one per SageMaker task type.

Each task is its config (a :class:`ConnectorTask`): ``pyflyte register`` stores ``config.to_custom()`` in the
TaskTemplate, and ``pyflyte run`` runs the connector in-process against SageMaker (or the fake). Imports flytekit;
the host never imports this module.

Placeholders in config strings (``{{inputs.NAME}}``) and the declared outputs are checked when the task is
defined, so a typo fails at import time rather than after a deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from flyteconnectors.core import Connector, TaskConfig
from flyteconnectors.core.local import ConnectorTask
from flyteconnectors.sagemaker._render import PLACEHOLDER
from flyteconnectors.sagemaker.connector import (
    CreateModel,
    EndpointConfig,
    EndpointDeployment,
    InvokeConfig,
    InvokeEndpoint,
    ModelConfig,
    ProcessingConfig,
    ProcessingJob,
    TrainingConfig,
    TrainingJob,
    TransformConfig,
    TransformJob,
    TuningConfig,
    TuningJob,
)

_INPUT = re.compile(r"\s*inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*")


class _SageMakerTask(ConnectorTask):
    connector_class: ClassVar[type[Connector[Any]]]

    def __init__(
        self,
        name: str,
        config: TaskConfig | Mapping[str, Any],
        inputs: dict[str, type] | None = None,
        outputs: dict[str, type] | None = None,
        **task_kwargs: Any,
    ) -> None:
        connector = self.connector_class
        produced = getattr(connector, "produces", ())
        unknown = sorted(set(outputs or {}) - set(produced))
        if unknown:
            raise ValueError(f"{name}: {connector.task_type} produces {', '.join(produced)}; it has no output "
                             f"{', '.join(unknown)}")
        super().__init__(name=name, connector=connector, config=config, inputs=inputs, outputs=outputs,
                         **task_kwargs)
        missing = sorted(_placeholder_inputs(self.task_config.to_custom()) - set(inputs or {}))
        if missing:
            raise ValueError(f"{name}: the config uses {', '.join('{{inputs.' + m + '}}' for m in missing)} but "
                             f"the task declares no such input")


def _placeholder_inputs(value: Any) -> set[str]:
    if isinstance(value, str):
        return {m.group(1) for p in PLACEHOLDER.finditer(value) if (m := _INPUT.fullmatch(p.group(1)))}
    if isinstance(value, dict):
        return set().union(*(_placeholder_inputs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholder_inputs(v) for v in value)) if value else set()
    return set()


class SageMakerTrainingTask(_SageMakerTask):
    """A training job: ``SageMakerTrainingTask(name, TrainingConfig(...), inputs=..., outputs=...)``.

    Outputs: ``model_artifact`` (str or FlyteFile), ``metrics`` (dict[str, float]), ``job_arn``, ``job_name``.
    """

    connector_class = TrainingJob

    def __init__(self, name: str, config: TrainingConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerProcessingTask(_SageMakerTask):
    """A processing job. Outputs: ``outputs`` (dict[str, str] of output name to S3 URI), ``job_arn``, ``job_name``."""

    connector_class = ProcessingJob

    def __init__(self, name: str, config: ProcessingConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerTransformTask(_SageMakerTask):
    """A batch transform job. Outputs: ``output_path`` (str or FlyteDirectory), ``job_arn``, ``job_name``."""

    connector_class = TransformJob

    def __init__(self, name: str, config: TransformConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerTuningTask(_SageMakerTask):
    """A hyperparameter tuning job. Outputs: ``best_training_job``, ``best_objective_value`` (float),
    ``best_hyperparameters`` (dict[str, str]), ``job_arn``, ``job_name``."""

    connector_class = TuningJob

    def __init__(self, name: str, config: TuningConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerEndpointTask(_SageMakerTask):
    """Deploys an endpoint and waits for InService. Outputs: ``endpoint_name``, ``endpoint_arn``.

    Aborting the execution deletes what the task created (endpoint, endpoint config, model) and nothing else.
    """

    connector_class = EndpointDeployment

    def __init__(self, name: str, config: EndpointConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerInvokeTask(_SageMakerTask):
    """One InvokeEndpoint call (sync). Outputs: ``response`` (str), ``response_json``, ``content_type``."""

    connector_class = InvokeEndpoint

    def __init__(self, name: str, config: InvokeConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


class SageMakerModelTask(_SageMakerTask):
    """CreateModel (sync). Outputs: ``model_name``, ``model_arn``."""

    connector_class = CreateModel

    def __init__(self, name: str, config: ModelConfig | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(name, config, **kwargs)


__all__ = [
    "SageMakerEndpointTask",
    "SageMakerInvokeTask",
    "SageMakerModelTask",
    "SageMakerProcessingTask",
    "SageMakerTrainingTask",
    "SageMakerTransformTask",
    "SageMakerTuningTask",
]
