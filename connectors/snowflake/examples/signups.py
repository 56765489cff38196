"""Record a signup in Snowflake, count signups per plan, and hand the result to a Python task.

Against the local fake (no Snowflake account needed):

    flyteconnectors fake snowflake --port 8789 &
    export FLYTECONNECTORS_SNOWFLAKE_HOST=127.0.0.1 FLYTECONNECTORS_SNOWFLAKE_PORT=8789
    export FLYTECONNECTORS_SNOWFLAKE_PROTOCOL=http SNOWFLAKE_PASSWORD=any-password
    pyflyte run examples/signups.py signups --email ada@example.com --plan pro

Against Snowflake: drop those variables, set the account, user, warehouse and database below (or the host
defaults FLYTECONNECTORS_SNOWFLAKE_DEFAULT_ACCOUNT, ...), and give the process a key pair in the environment
variable SNOWFLAKE_PRIVATE_KEY (PEM; SNOWFLAKE_PRIVATE_KEY_PASSPHRASE if it is encrypted).
"""

from __future__ import annotations

from flytekit import StructuredDataset, kwtypes, task, workflow

from flyteconnectors.snowflake import SnowflakeQueryConfig
from flyteconnectors.snowflake.task import SnowflakeQueryTask

CONFIG = SnowflakeQueryConfig(
    account="myorg-analytics",
    user="FLYTE_SVC",
    role="TRANSFORMER",
    warehouse="COMPUTE_WH",
    database="ANALYTICS",
    schema="PUBLIC",
    query_tag="examples.signups",
    statement_timeout=600,
)

create_table = SnowflakeQueryTask(
    name="examples.snowflake.create_signups",
    query_template="CREATE TABLE IF NOT EXISTS signups (email VARCHAR, plan VARCHAR)",
    config=CONFIG,
)

# The inputs travel as bind parameters: an email like "x'); DROP TABLE signups; --" is just a value.
record_signup = SnowflakeQueryTask(
    name="examples.snowflake.record_signup",
    query_template="INSERT INTO signups (email, plan) VALUES (:email, :plan)",
    config=CONFIG,
    inputs=kwtypes(email=str, plan=str),
    outputs={"query_id": str},
)

signups_by_plan = SnowflakeQueryTask(
    name="examples.snowflake.signups_by_plan",
    query_template="SELECT plan, COUNT(*) AS signups FROM signups WHERE plan = :plan GROUP BY plan",
    config=CONFIG,
    inputs=kwtypes(plan=str),
    outputs={"results": StructuredDataset, "query_id": str},
)


@task
def summarize(results: StructuredDataset, insert_id: str, select_id: str) -> str:
    # The result stays in Snowflake; with flytekit's Snowflake handlers, results.open(pd.DataFrame).all() reads it.
    uri = results.literal.uri if results.literal is not None else results.uri
    return f"signup recorded by query {insert_id}; counts in {uri} (query {select_id})"


@workflow
def signups(email: str = "ada@example.com", plan: str = "pro") -> str:
    created = create_table()
    inserted = record_signup(email=email, plan=plan)
    results, select_id = signups_by_plan(plan=plan)
    created >> inserted
    inserted >> results
    return summarize(results=results, insert_id=inserted, select_id=select_id)
