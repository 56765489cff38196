"""The fake as a user drives it over HTTP (`flyteconnectors fake snowflake`), with the real 5.x driver."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import snowflake.connector

from flyteconnectors.snowflake.fake import SnowflakeFake


def control(fake: SnowflakeFake, action: str, body: Any = None) -> Any:
    request = urllib.request.Request(f"{fake.url}/_fake/{action}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def served() -> Iterator[SnowflakeFake]:
    with SnowflakeFake().serve() as fake:
        yield fake


def connect(fake: SnowflakeFake, **kw: Any) -> Any:
    return snowflake.connector.connect(account="acme-dev", host="127.0.0.1", port=fake.port, protocol="http",
                                       paramstyle="qmark", enable_server_session_keep_alive_auto_detection=False,
                                       login_timeout=5, **kw)


def test_rules_users_and_scripts_over_the_control_api(served):
    control(served, "snowflake/user", {"name": "ANALYST", "password": "s3cret-pass"})
    control(served, "snowflake/rule", {"pattern": "FROM orders", "columns": ["ID", "TOTAL"], "rows": [[1, 9.5]]})
    control(served, "script", {"steps": ["QUEUED", "RUNNING", "SUCCESS"]})

    with pytest.raises(snowflake.connector.DatabaseError, match="390100"):
        connect(served, user="ANALYST", password="wrong-pass")
    with connect(served, user="ANALYST", password="s3cret-pass") as conn:
        query_id = conn.cursor().execute_async("SELECT id, total FROM orders WHERE total > ?", (5,))["queryId"]
        statuses = [conn.get_query_status(query_id).name for _ in range(3)]
        cursor = conn.cursor()
        cursor.get_results_from_sfqid(query_id)
        rows = cursor.fetchall()

    assert statuses == ["QUEUED", "RUNNING", "SUCCESS"]
    assert rows == [(1, 9.5)]
    [listed] = control(served, "snowflake/queries")
    assert (listed["id"], listed["async"], listed["status"]) == (query_id, True, "SUCCESS")


def test_a_retried_request_runs_once(served):
    served.sql("CREATE TABLE t (x INTEGER)")
    served.inject_fault(503, method="POST", path="query-request", after=True)

    with connect(served, user="ANYONE", password="anything", retry_max_attempts=3, retry_backoff_base_ms=10) as conn:
        conn.cursor().execute("INSERT INTO t VALUES (?)", (1,))

    attempts = served.requests("POST", "query-request")
    assert [e.status for e in attempts] == [503, 200]
    assert attempts[0].query["requestId"] == attempts[1].query["requestId"]
    assert served.sql("SELECT COUNT(*) FROM t") == [(1,)]
