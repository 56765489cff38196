"""Typed task configuration: what a task may ask for, validated with errors that name the field."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from flyteconnectors.core.errors import InvalidTaskConfig

_CONNECTION_KEYS = ("secrets", "configs")


class TaskConfig(BaseModel):
    """Base of every connector's config model. Unknown fields are refused, so a typo is an error, not ignored.

    The model is validated from ``TaskTemplate.custom`` (a JSON object). Connectors whose tasks carry SQL or
    the template's string ``config`` map name them with ``sql_field`` / ``config_fields``.
    """

    # defer_build: the host imports every connector module at start; models are built on first use.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    #: Field that receives ``TaskTemplate.sql.statement``, if any.
    sql_field: ClassVar[str | None] = None

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        data: dict[str, Any] = dict(custom or {})
        for key in _CONNECTION_KEYS:
            # Flyte 2 names a task's secrets and configs under these keys of ``custom`` and sends their values in
            # the call's Connection; they are not task configuration.
            if key not in cls.model_fields and isinstance(data.get(key), dict):
                data.pop(key)
        if cls.sql_field and sql is not None and cls.sql_field not in data:
            data[cls.sql_field] = sql
        return cls.parse(data)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> TaskConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise invalid_config_from(err) from None

    def to_custom(self) -> dict[str, Any]:
        """The JSON object stored in ``TaskTemplate.custom`` at registration."""
        data = self.model_dump(mode="json", exclude_none=True, by_alias=True)
        if self.sql_field:
            data.pop(self.sql_field, None)
        return data


def invalid_config_from(err: ValidationError) -> InvalidTaskConfig:
    """One readable InvalidTaskConfig naming every bad field."""
    problems = []
    first_field = ""
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<config>"
        first_field = first_field or loc
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{loc}: {msg}")
    exc = InvalidTaskConfig(first_field, "; ".join(problems))
    exc.message = "invalid task config: " + "; ".join(problems)
    return exc
