"""flyteconnectors.openai: OpenAI chat completions and Batch API jobs as Flyte tasks.

The task types for workflow authors live in ``flyteconnectors.openai.task`` (it imports flytekit); the names
here are the config models, importable without flytekit or the OpenAI SDK.
"""

from flyteconnectors.openai.connector import BatchConfig, ChatConfig, Message, OpenAISettings

__all__ = ["BatchConfig", "ChatConfig", "Message", "OpenAISettings"]
