"""Deliberately broken variants of the example connector. test_contract_selftest.py runs the contract suite
against each and checks that exactly the case guarding that mistake fails. Not collected on its own."""

from __future__ import annotations

import time
import uuid

from test_contract_example import TestExampleJob as _ExampleContract

from flyteconnectors.core import Phase, Resource
from flyteconnectors.core.testing.example import STATES, ExampleJob, ExampleMeta


class NonIdempotentCreate(ExampleJob):
    def create(self, task):
        job = self._client(task).call("POST", "/v1/jobs", {"name": uuid.uuid4().hex, "payload": task.config.payload})
        return ExampleMeta(job_id=job["id"])


class RaisesOnUnknownState(ExampleJob):
    PHASES = {"QUEUED": Phase.QUEUED, "RUNNING": Phase.RUNNING, "SUCCEEDED": Phase.SUCCEEDED,
              "FAILED": Phase.FAILED, "CANCELLED": Phase.ABORTED, "CANCELLING": Phase.RUNNING}

    def get(self, job, ctx):
        status = self._client(ctx).call("GET", f"/v1/jobs/{job.job_id}")
        return Resource(self.PHASES[status["state"]], status["message"], {"result": status["result"]})


class DeleteNotIdempotent(ExampleJob):
    def delete(self, job, ctx):
        status = self._client(ctx).call("GET", f"/v1/jobs/by-name/{self._name_of(job, ctx)}")
        if status["state"] in ("CANCELLED", "SUCCEEDED"):
            raise RuntimeError("job is already finished")
        super().delete(job, ctx)

    def _name_of(self, job, ctx):
        return next(j["name"] for j in FAKES[-1].jobs.values() if j["id"] == job.job_id)


class LeakyMeta(ExampleMeta):
    note: str = ""


class LeaksSecret(ExampleJob):
    """Stores the credential in resource_meta under an innocent name (the core cannot know it is secret)."""

    meta_model = LeakyMeta

    def create(self, task):
        meta = super().create(task)
        return LeakyMeta(job_id=meta.job_id, note=task.secrets.require("example_token"))


class BlocksTheLoop(ExampleJob):
    async def get(self, job, ctx):
        time.sleep(1.0)  # a blocking call inside async def
        return ExampleJob.get(self, job, ctx)


class FalseSuccess(ExampleJob):
    def get(self, job, ctx):
        status = self._client(ctx).call("GET", f"/v1/jobs/{job.job_id}")
        state = "SUCCEEDED" if status["state"] == "FAILED" else status["state"]
        return STATES.resource(state, outputs={"result": status["result"]})


class NeverCancels(ExampleJob):
    def delete(self, job, ctx):
        return None


class TransientAsFatal(ExampleJob):
    def get(self, job, ctx):
        try:
            return super().get(job, ctx)
        except Exception as err:
            raise RuntimeError(f"status check failed: {err}") from None


class LooseMeta(ExampleMeta):
    job_id: str  # type: ignore[assignment]  # the service's id format is not checked


class TrustsItsHandle(ExampleJob):
    """Takes the job id in resource_meta on trust and builds URLs from it."""

    meta_model = LooseMeta


FAKES: list = []


def _contract_for(broken):
    class Contract(_ExampleContract):
        connector = broken

        def remote_jobs(self, fake):
            FAKES.append(fake)
            return super().remote_jobs(fake)

    Contract.__name__ = f"Test{broken.__name__}"
    return Contract


for _broken in (NonIdempotentCreate, RaisesOnUnknownState, DeleteNotIdempotent, LeaksSecret, BlocksTheLoop,
                FalseSuccess, NeverCancels, TransientAsFatal, TrustsItsHandle):
    globals()[f"Test{_broken.__name__}"] = _contract_for(_broken)
