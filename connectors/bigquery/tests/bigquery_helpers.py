"""Builders shared by the BigQuery tests (a unique module name, so packages' tests can run in one session)."""

from __future__ import annotations

import functools
from typing import Any

from flyteconnectors.bigquery.connector import BigQueryQuery
from flyteconnectors.bigquery.fake import BigQueryFake
from flyteconnectors.core.testing import builders

TASK_TYPE = BigQueryQuery.task_type
OUTPUTS = {"results": builders.STRUCTURED_DATASET, "job_id": str, "bytes_processed": int}


def settings(fake: BigQueryFake, **extra: Any) -> dict[str, Any]:
    """Connector settings pointing at ``fake``, with short SDK retries."""
    return {"endpoint": fake.url, "anonymous": True, "project": "proj", "retry_initial_delay": 0.01,
            "retry_budget": 0.3, **extra}


def query_task(sql: str = "SELECT 1", *, inputs: dict[str, Any] | None = None,
               outputs: dict[str, Any] | None = None, **custom: Any) -> Any:
    """A ``bigquery-query`` TaskTemplate as ``pyflyte register`` produces it: the SQL in ``template.sql``."""
    return builders.task_template(TASK_TYPE, custom, inputs=inputs or {},
                                  outputs=OUTPUTS if outputs is None else outputs, sql=sql)


@functools.lru_cache(maxsize=1)
def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def service_account_key(fake: BigQueryFake) -> dict[str, str]:
    """A service-account key whose token endpoint is the fake's (one RSA key per test session)."""
    return {"type": "service_account", "project_id": "sa-proj", "private_key_id": "k1",
            "private_key": _private_key_pem(), "client_email": "runner@sa-proj.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{fake.url}/token"}
