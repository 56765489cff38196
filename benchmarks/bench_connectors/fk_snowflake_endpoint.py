"""Point flytekit's Snowflake connector at the local fake (loaded with ``pyflyte serve connector --modules``).

flytekit's connector calls ``snowflake.connector.connect(user=..., account=..., private_key=..., ...)`` with no
``host``, ``port`` or ``protocol``; this adds them from ``BENCH_SNOWFLAKE_HOST`` / ``BENCH_SNOWFLAKE_PORT``
(plain HTTP). Nothing else of the connector changes: it still connects (and logs in) on every call, on the
event loop.
"""

from __future__ import annotations

import os
from typing import Any

import snowflake.connector as sc

_connect = sc.connect


def connect(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("host", os.environ["BENCH_SNOWFLAKE_HOST"])
    kwargs.setdefault("port", int(os.environ["BENCH_SNOWFLAKE_PORT"]))
    kwargs.setdefault("protocol", "http")
    return _connect(*args, **kwargs)


sc.connect = connect
