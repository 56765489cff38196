"""The fake-service toolkit: routing, journal, faults, latency, scripts and the control API, over real HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from flyteconnectors.core.testing.fake import FakeHTTPError, FakeRequest, FakeService, route


class Jobs(FakeService):
    name = "jobs"
    default_script = ("QUEUED", "DONE")

    def __init__(self) -> None:
        super().__init__()
        self.created = 0

    @route("POST", r"/jobs")
    def create(self, request: FakeRequest):
        self.created += 1
        job_id = f"j{self.next_id()}"
        self.new_job_script(job_id)
        return {"id": job_id}

    @route("GET", r"/jobs/(?P<job_id>\w+)")
    def status(self, request: FakeRequest, job_id: str):
        if job_id not in self.scripts:
            raise FakeHTTPError(404, {"error": "no such job"})
        return {"state": self.scripts[job_id].advance()}

    def control(self, action, request):
        if action == "created":
            return {"created": self.created}
        return None


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None, timeout: float = 5):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"null")


@pytest.fixture
def jobs():
    with Jobs().serve() as fake:
        yield fake


def test_routes_scripts_and_journal(jobs):
    _, job = call(f"{jobs.url}/jobs", "POST", {})
    states = [call(f"{jobs.url}/jobs/{job['id']}")[1]["state"] for _ in range(3)]
    assert states == ["QUEUED", "DONE", "DONE"]  # the last step sticks
    assert [e.method for e in jobs.requests(path=r"^/jobs")] == ["POST", "GET", "GET", "GET"]


def test_a_queued_script_goes_to_the_next_job(jobs):
    jobs.script_next_job("RUNNING", "FAILED")
    _, job = call(f"{jobs.url}/jobs", "POST", {})
    assert [call(f"{jobs.url}/jobs/{job['id']}")[1]["state"] for _ in range(2)] == ["RUNNING", "FAILED"]


def test_an_injected_status_fires_count_times(jobs):
    jobs.inject_fault(503, path=r"^/jobs$", count=2)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as err:
            call(f"{jobs.url}/jobs", "POST", {})
        assert err.value.code == 503
    assert call(f"{jobs.url}/jobs", "POST", {})[0] == 200
    assert jobs.created == 1


def test_a_lost_response_still_has_its_side_effect(jobs):
    jobs.inject_fault(500, path=r"^/jobs$", after=True)
    with pytest.raises(urllib.error.HTTPError):
        call(f"{jobs.url}/jobs", "POST", {})
    assert jobs.created == 1


def test_a_dropped_response_closes_the_connection(jobs):
    jobs.inject_fault(None, path=r"^/jobs$", drop=True)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(f"{jobs.url}/jobs", "POST", {})
    assert jobs.created == 1


def test_faults_match_the_nth_call_and_request_headers(jobs):
    jobs.inject_fault(429, nth=2, path=r"^/jobs$")
    jobs.inject_fault(500, path=r"^/jobs$", match_headers={"X-Amz-Target": "CreateThing"})
    assert call(f"{jobs.url}/jobs", "POST", {})[0] == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        call(f"{jobs.url}/jobs", "POST", {})
    assert err.value.code == 429
    assert call(f"{jobs.url}/jobs", "POST", {}, headers={"X-Amz-Target": "Other"})[0] == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        call(f"{jobs.url}/jobs", "POST", {}, headers={"X-Amz-Target": "Svc.CreateThing"})
    assert err.value.code == 500


def test_hang_and_latency_delay_answers(jobs):
    jobs.set_latency(0.05)
    started = time.monotonic()
    call(f"{jobs.url}/jobs", "POST", {})
    assert time.monotonic() - started >= 0.05
    jobs.inject_fault(None, hang=2, path=r"^/jobs$")
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        call(f"{jobs.url}/jobs", "POST", {}, timeout=0.3)


def test_the_control_api_over_http(jobs):
    call(f"{jobs.url}/_fake/faults", "POST", {"status": 502, "path": "^/jobs$"})
    with pytest.raises(urllib.error.HTTPError):
        call(f"{jobs.url}/jobs", "POST", {})
    call(f"{jobs.url}/_fake/script", "POST", {"steps": ["X"]})
    _, job = call(f"{jobs.url}/jobs", "POST", {})
    assert call(f"{jobs.url}/jobs/{job['id']}")[1]["state"] == "X"
    _, journal = call(f"{jobs.url}/_fake/requests")
    assert [e["status"] for e in journal] == [502, 200, 200]
    assert call(f"{jobs.url}/_fake/created")[1] == {"created": 1}  # a subclass's own control action
    call(f"{jobs.url}/_fake/reset", "POST", {})
    assert call(f"{jobs.url}/_fake/requests")[1] == []


def test_the_same_fake_mounts_into_responses():
    responses = pytest.importorskip("responses")
    requests = pytest.importorskip("requests")
    fake = Jobs()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.mount_responses(rsps, "https://jobs.example.com")
        job = requests.post("https://jobs.example.com/jobs", json={}).json()
        assert requests.get(f"https://jobs.example.com/jobs/{job['id']}").json() == {"state": "QUEUED"}
    assert fake.created == 1
