"""6. Secrets: every connector's secrets carry a canary value. Across the whole suite, everything the hosts said
— gRPC details, resource_meta, messages, custom_info, log links, outputs — and every line they logged
(``--log-format json``, stdout and stderr) is searched for the canaries. Zero hits.

This module runs last. It adds two probes of its own: wrong credentials sent per call on the Flyte 2 wire (the
fakes that check credentials answer with errors that echo them), and, in the full run, a host logging at DEBUG.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from relsuite import config
from relsuite.jobs import TERMINAL, Job, Propeller

from flyteconnectors.core.testing.host import Flyte2Client

SECTION = "secrets"


def _probe_wrong_credentials(lab: Any, host: Any, canary: str) -> dict[str, str]:
    """One job per connector with every secret replaced, per call, by a value holding ``canary``."""
    outcomes = {}
    with host.channel() as channel:
        for profile in lab.profiles:
            fake = lab.fakes[profile.package]
            names = list(profile.secrets(canary, fake))
            wrong = {name: f"{canary}-{name}" for name in names}
            client = Flyte2Client(channel, timeout=10, secrets=wrong)
            case = profile.job(fake)
            ident = Job(profile, case, execution=f"wrongcreds{profile.package}").identity()
            try:
                meta = client.create(case.template, case.inputs, ident=ident)
                lab.recorder.scan("resource_meta", meta)
                for _ in range(20):
                    resource = client.get(case.template, meta)
                    lab.recorder.scan_resource(resource)
                    if resource.phase in TERMINAL:
                        break
                    time.sleep(0.05)
                outcomes[profile.package] = f"phase {resource.phase}: {resource.message[:100]}"
            except grpc.RpcError as err:
                lab.recorder.scan("gRPC error details", err.details() or "")
                outcomes[profile.package] = f"{err.code().name}: {(err.details() or '')[:100]}"
    return outcomes


def test_no_canary_secret_appears_in_anything_the_hosts_said_or_logged(lab, main_host, sizes, results):
    section = results.section(SECTION)
    wrong_canary = f"wrong{lab.canary[6:]}"
    lab.recorder.add_canary(wrong_canary)
    section["wrong_credentials_probe"] = _probe_wrong_credentials(lab, main_host, wrong_canary)
    if config.is_full():  # a host logging at DEBUG, every SDK's chatter included
        with lab.running("debug-logs", "--log-level", "DEBUG") as debug:
            with debug.channel() as channel:
                client = Propeller([channel], lab.recorder, timeout=60)  # first calls import the SDKs
                for profile in lab.profiles:
                    fake = lab.fakes[profile.package]
                    for case in [profile.job(fake), *profile.extra_cases(fake)]:
                        ident = Job(profile, case, execution=f"debug{profile.package}").identity()
                        try:
                            if case.sync:
                                client.execute_sync(case.template, case.inputs, ident)
                            else:
                                meta = client.create(case.template, case.inputs, ident)
                                client.get(case.template, meta)
                                client.delete(case.template, meta)
                        except grpc.RpcError:
                            pass  # recorded and scanned by the client
            section["debug_probe_outcomes"] = _probe_wrong_credentials(lab, debug, wrong_canary)
    log_lines = lab.scan_logs()
    recorder = lab.recorder
    section["canaries"] = len(recorder.canaries)
    section["secrets_per_connector"] = {p.package: sorted(p.secrets(lab.canary, lab.fakes[p.package]))
                                        for p in lab.profiles}
    section["scanned"] = dict(recorder.scanned)
    section["host_log_lines"] = sum(log_lines.values())
    section["hosts"] = len(log_lines)
    section["hits"] = len(recorder.hits)
    section["hit_places"] = sorted({place for place, _ in recorder.hits})
    section["hit_samples"] = [f"{place}: {context}" for place, context in recorder.hits[:10]]
    assert recorder.scanned["host log"] >= 1 and recorder.scanned["resource message"] > 0
    assert not recorder.hits, f"{len(recorder.hits)} canary hits:\n" + "\n".join(section["hit_samples"])
