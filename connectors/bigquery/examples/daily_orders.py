"""A BigQuery query with typed parameters, its dry run, and a task that uses the result table.

Against the local fake (no Google account needed):

    flyteconnectors fake bigquery --port 8788 &
    export FLYTECONNECTORS_BIGQUERY_ENDPOINT=http://127.0.0.1:8788
    export FLYTECONNECTORS_BIGQUERY_ANONYMOUS=true
    pyflyte run examples/daily_orders.py daily_orders --day 2024-05-01 --min_total 20.5

Against BigQuery: drop those variables, set ``project`` below (or FLYTECONNECTORS_BIGQUERY_PROJECT) and give the
process credentials (Application Default Credentials, or a service-account key in the environment variable
BIGQUERY_SERVICE_ACCOUNT_JSON).
"""

from __future__ import annotations

import datetime

from flytekit import StructuredDataset, kwtypes, task, workflow

from flyteconnectors.bigquery import BigQueryQueryConfig
from flyteconnectors.bigquery.task import BigQueryQueryTask

QUERY = """
SELECT order_id, customer, total
FROM `shop.orders`
WHERE day = @day AND total >= @min_total AND region IN UNNEST(@regions)
"""

orders_of_day = BigQueryQueryTask(
    name="examples.bigquery.orders_of_day",
    query_template=QUERY,
    config=BigQueryQueryConfig(
        project="flyte-demo",
        location="US",
        destination_table="reports.orders_of_day",
        write_disposition="WRITE_TRUNCATE",
        labels={"team": "analytics"},
        maximum_bytes_billed=10 * 1024**3,
    ),
    inputs=kwtypes(day=datetime.date, min_total=float, regions=list[str]),
    outputs={"results": StructuredDataset, "job_id": str, "bytes_processed": int},
)

estimate = BigQueryQueryTask(
    name="examples.bigquery.estimate",
    query_template=QUERY,
    config=BigQueryQueryConfig(project="flyte-demo", location="US", dry_run=True),
    inputs=kwtypes(day=datetime.date, min_total=float, regions=list[str]),
    outputs={"bytes_processed": int},
)


@task
def summarize(table: StructuredDataset, job_id: str, bytes_processed: int, estimated: int) -> str:
    # A StructuredDataset read from a literal keeps its URI on `.literal` (flytekit sets `.uri` only when writing).
    uri = table.literal.uri if table.literal is not None else table.uri
    return f"{uri} written by {job_id}: {bytes_processed} bytes processed ({estimated} estimated)"


@workflow
def daily_orders(day: datetime.date = datetime.date(2024, 5, 1), min_total: float = 20.5) -> str:
    regions = ["emea", "amer"]
    estimated = estimate(day=day, min_total=min_total, regions=regions)
    table, job_id, processed = orders_of_day(day=day, min_total=min_total, regions=regions)
    return summarize(table=table, job_id=job_id, bytes_processed=processed, estimated=estimated)
