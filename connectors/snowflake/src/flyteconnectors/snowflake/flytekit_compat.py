"""flytekit's Snowflake task type (``snowflake`` v0, flytekitplugins-snowflake), served by our connector.

Workflows registered with flytekit's ``SnowflakeTask`` keep working when this package replaces
flytekitplugins-snowflake on the connector host. flytekit puts the connection in ``TaskTemplate.config`` (a
string map) and the query in ``TaskTemplate.sql``::

    config = {"user": ..., "account": ..., "database": ..., "schema": ..., "warehouse": ...}

That becomes :class:`~flyteconnectors.snowflake.connector.SnowflakeQueryConfig` with key-pair sign-in from the
same secret flytekit read (``snowflake_private_key``), and the query runs through the same code as
``snowflake-query`` tasks. The ``results`` output is the URI flytekit's connector produced
(``snowflake://user:account/warehouse/database/schema/query_id``), so flytekit's Snowflake structured-dataset
decoder reads it as before.

What changes on purpose: flytekit's ``%(name)s`` placeholders are bound server-side instead of being formatted
into the SQL text; a failed query fails with Snowflake's error instead of no message; statuses such as QUEUED or
RESUMING_WAREHOUSE are phases instead of gRPC errors; the host no longer blocks its event loop or leaks a
connection per poll.

No driver is imported here.
"""

from __future__ import annotations

from typing import Any

from flyteconnectors.core import InvalidTaskConfig
from flyteconnectors.core.config import TaskConfig
from flyteconnectors.snowflake.connector import SnowflakeQuery, SnowflakeQueryConfig, SnowflakeQueryMeta

TASK_TYPE = "snowflake"
#: The keys of flytekit's ``SnowflakeTask.get_config`` (all required there).
CONFIG_KEYS = ("user", "account", "database", "schema", "warehouse")


class FlytekitSnowflakeConfig(SnowflakeQueryConfig):
    """:class:`SnowflakeQueryConfig` built from flytekit's ``SnowflakeTask`` template (``config`` map + ``sql``)."""

    @classmethod
    def from_template_parts(
        cls, custom: dict[str, Any] | None, config: dict[str, str] | None = None, sql: str | None = None
    ) -> TaskConfig:
        if custom:
            raise InvalidTaskConfig(f"custom.{sorted(custom)[0]}", "flytekit's snowflake task type carries no custom "
                                    "fields; use the snowflake-query task type for more options")
        given = dict(config or {})
        unknown = sorted(set(given) - set(CONFIG_KEYS))
        if unknown:
            raise InvalidTaskConfig(f"config.{unknown[0]}", f"not a field of flytekit's SnowflakeConfig "
                                    f"({', '.join(CONFIG_KEYS)})")
        # flytekit signed in with a key pair only, from the secret snowflake_private_key.
        data: dict[str, Any] = {key: value for key, value in given.items() if value}
        data["auth"] = "key_pair"
        return super().from_template_parts(data, None, sql)


class FlytekitSnowflakeQuery(SnowflakeQuery):
    """Serves flytekit's ``snowflake`` v0 through :class:`SnowflakeQuery`."""

    name = "Snowflake query (flytekit task type)"
    task_type = TASK_TYPE
    task_version = 0
    config_model = FlytekitSnowflakeConfig
    meta_model = SnowflakeQueryMeta


CONNECTORS = (FlytekitSnowflakeQuery,)
