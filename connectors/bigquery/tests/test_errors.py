"""How SDK exceptions become the core's errors (which decide retry, FAILED or job-not-found)."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc

from flyteconnectors.bigquery._sdk import service_error
from flyteconnectors.core import InvalidTaskConfig, JobNotFound, JobRejected, TransientServiceError


def api_error(kind: type[gexc.GoogleAPICallError], reason: str, message: str) -> gexc.GoogleAPICallError:
    return kind(message, errors=[{"reason": reason, "message": message}])


@pytest.mark.parametrize(("error", "action", "expected", "words"), [
    (api_error(gexc.BadRequest, "invalidQuery", "Syntax error at [1:1]"), "create", JobRejected,
     "400 invalidQuery: Syntax error at [1:1]"),
    (api_error(gexc.Forbidden, "accessDenied", "Access Denied: Project p"), "create", JobRejected, "accessDenied"),
    (api_error(gexc.Forbidden, "rateLimitExceeded", "Exceeded rate limits"), "create", TransientServiceError,
     "rateLimitExceeded"),
    (api_error(gexc.Forbidden, "quotaExceeded", "Quota exceeded: concurrent queries"), "create",
     TransientServiceError, "quotaExceeded"),
    (api_error(gexc.ServiceUnavailable, "backendError", "Backend error"), "get", TransientServiceError, "503"),
    (api_error(gexc.TooManyRequests, "", "slow down"), "get", TransientServiceError, "429"),
    (api_error(gexc.NotFound, "notFound", "Not found: Job p:US.j"), "get", JobNotFound, "Not found: Job p:US.j"),
    (api_error(gexc.NotFound, "notFound", "Not found: Dataset p:ds"), "create", JobRejected, "Dataset p:ds"),
    (api_error(gexc.Unauthorized, "authError", "Invalid Credentials"), "get", JobRejected, "credentials"),
    (gexc.RetryError("Timeout of 0.3s exceeded", api_error(gexc.InternalServerError, "internalError", "boom")),
     "get", TransientServiceError, "retry budget ran out: BigQuery is unavailable: 500 internalError: boom"),
    (requests.ConnectionError("connection refused"), "delete", TransientServiceError, "could not reach BigQuery"),
    (ValueError("bad destination"), "create", InvalidTaskConfig, "refused the job config: bad destination"),
])
def test_sdk_errors_map_to_core_errors(error, action, expected, words):
    mapped = service_error(error, action)
    assert type(mapped) is expected
    assert words in str(mapped)


def test_unexpected_errors_pass_through_for_the_core_to_report():
    boom = RuntimeError("bug")
    assert service_error(boom, "get") is boom
