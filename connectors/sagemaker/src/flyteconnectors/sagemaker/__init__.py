"""flyteconnectors-sagemaker: SageMaker training, processing, batch transform, tuning, endpoints and invocation.

Workflow authors use the task types of :mod:`flyteconnectors.sagemaker.task` (flytekit side) with the config
models below. Importing this package loads neither flytekit nor boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flyteconnectors.sagemaker.connector import (
    CategoricalRange,
    Channel,
    ContinuousRange,
    EndpointConfig,
    IntegerRange,
    InvokeConfig,
    MetricDefinition,
    ModelConfig,
    ModelSpec,
    ProcessingConfig,
    ProcessingInput,
    ProcessingOutput,
    SageMakerSettings,
    ServerlessSpec,
    TrainingConfig,
    TrainingSpec,
    TransformConfig,
    TuningConfig,
)

if TYPE_CHECKING:
    from flyteconnectors.sagemaker.task import (
        SageMakerEndpointTask,
        SageMakerInvokeTask,
        SageMakerModelTask,
        SageMakerProcessingTask,
        SageMakerTrainingTask,
        SageMakerTransformTask,
        SageMakerTuningTask,
    )

_TASKS = (
    "SageMakerEndpointTask",
    "SageMakerInvokeTask",
    "SageMakerModelTask",
    "SageMakerProcessingTask",
    "SageMakerTrainingTask",
    "SageMakerTransformTask",
    "SageMakerTuningTask",
)

__all__ = [
    "CategoricalRange",
    "Channel",
    "ContinuousRange",
    "EndpointConfig",
    "IntegerRange",
    "InvokeConfig",
    "MetricDefinition",
    "ModelConfig",
    "ModelSpec",
    "ProcessingConfig",
    "ProcessingInput",
    "ProcessingOutput",
    "SageMakerEndpointTask",
    "SageMakerInvokeTask",
    "SageMakerModelTask",
    "SageMakerProcessingTask",
    "SageMakerSettings",
    "SageMakerTrainingTask",
    "SageMakerTransformTask",
    "SageMakerTuningTask",
    "ServerlessSpec",
    "TrainingConfig",
    "TrainingSpec",
    "TransformConfig",
    "TuningConfig",
]


def __getattr__(name: str) -> Any:
    if name in _TASKS:
        from flyteconnectors.sagemaker import task

        return getattr(task, name)
    raise AttributeError(name)
