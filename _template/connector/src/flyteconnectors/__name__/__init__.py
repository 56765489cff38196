"""Flyte connectors for {{Name}}."""

from flyteconnectors.{{name}}.connector import {{Name}}Config

__all__ = ["{{Name}}Config"]
