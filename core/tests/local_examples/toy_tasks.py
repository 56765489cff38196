"""The toy package's task types, as a connector package's task.py would declare them."""

from flytekit.extend import TaskPlugins

from flyteconnectors.core.local import FunctionConnectorTask
from local_examples.toy_service import ToyRun, ToyRunConfig


class ToyRunTask(FunctionConnectorTask[ToyRunConfig]):
    connector = ToyRun


TaskPlugins.register_pythontask_plugin(ToyRunConfig, ToyRunTask)
