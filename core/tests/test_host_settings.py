"""Host configuration (flags, environment, TOML file), connector settings, signing keys and logging."""

from __future__ import annotations

import io
import json
import logging

import pytest
from click.testing import CliRunner
from toy import ToyJob

from flyteconnectors.core.cli import main
from flyteconnectors.core.dispatcher import TaskRequest, run_sync
from flyteconnectors.core.host.app import build_dispatcher, build_registry
from flyteconnectors.core.host.logs import configure_logging
from flyteconnectors.core.host.settings import HostSettings, SettingsError, load_settings
from flyteconnectors.core.registry import Registry
from flyteconnectors.core.resource import Phase
from flyteconnectors.core.secrets import REDACTOR
from flyteconnectors.core.testing import builders


def write(tmp_path, text: str) -> str:
    path = tmp_path / "flyteconnectors.toml"
    path.write_text(text)
    return str(path)


def test_flags_beat_environment_which_beats_the_config_file(tmp_path):
    config = write(tmp_path, 'port = 7000\nmetrics_port = 7001\nlog_format = "json"\nenabled = ["a", "b"]\n')
    env = {"FLYTECONNECTORS_PORT": "7100", "FLYTECONNECTORS_ENABLED": "c, d"}

    settings = load_settings({"port": 7200, "log_level": None}, config_file=config, env=env)

    assert settings.port == 7200  # flag
    assert settings.enabled == ["c", "d"]  # env over file
    assert (settings.metrics_port, settings.log_format) == (7001, "json")  # file over default
    assert settings.grace_period == HostSettings().grace_period  # default


def test_config_file_is_found_through_the_environment(tmp_path):
    config = write(tmp_path, "workers = 3\n")
    assert load_settings(env={"FLYTECONNECTORS_CONFIG": config}).workers == 3


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("prot = 8000\n", {}, "unknown key(s) prot"),
        ('port = "eight"\n', {}, "port"),
        ("", {"FLYTECONNECTORS_WORKERS": "0"}, "workers"),
        ("", {"FLYTECONNECTORS_LOG_FORMAT": "xml"}, "FLYTECONNECTORS_LOG_FORMAT"),
        ('tls_cert = "/x.pem"\n', {}, "tls_key"),
        ("port = [\n", {}, "flyteconnectors.toml"),
    ],
)
def test_bad_configuration_names_the_key_and_its_origin(tmp_path, text, env, expected):
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=write(tmp_path, text), env=env)
    assert expected in str(err.value)


def test_connector_tables_and_default_executor_size_reach_connector_settings(tmp_path, monkeypatch):
    config = write(tmp_path, "executor_threads = 9\n[connectors.toy]\nexecutor_threads = 7\n")
    settings = load_settings({"modules": ["toy"]}, config_file=config, env={})

    registry = build_registry(settings)
    assert registry.get("toy_job").settings.executor_threads == 7  # [connectors.toy]

    monkeypatch.setenv("FLYTECONNECTORS_TOY_EXECUTOR_THREADS", "5")
    assert build_registry(settings).get("toy_job").settings.executor_threads == 5  # env wins, field by field

    other = Registry(settings.settings_source())
    other.register(ToyJob, package="other")
    assert other.get("toy_job").settings.executor_threads == 9  # the host-wide default


def test_enabled_filters_installed_packages_but_modules_are_always_served():
    registry = build_registry(load_settings({"enabled": ["toy"], "modules": ["toy"]}, env={}))
    assert [entry.package for entry in registry.packages.values()] == ["toy"]
    assert registry.packages["toy"].loaded


def create_meta(settings: HostSettings) -> bytes:
    dispatcher = build_dispatcher(settings, build_registry(settings))
    request = TaskRequest("toy_job", custom={"steps": ["RUNNING"]}, identity=builders.identity(execution="keys1"))
    return run_sync(dispatcher.create, request)


def get_phase(settings: HostSettings, meta: bytes) -> tuple[Phase, str]:
    dispatcher = build_dispatcher(settings, build_registry(settings))
    resource = run_sync(dispatcher.get, "toy_job", 0, meta)
    return resource.phase, resource.message


def test_signing_keys_rotate_first_signs_all_verify(tmp_path):
    old = load_settings({"modules": ["toy"]}, env={"FLYTECONNECTORS_SIGNING_KEYS": "key-one-0123456789"})
    keys_file = tmp_path / "keys"
    keys_file.write_text("key-two-0123456789\n# previous key, still verifies\nkey-one-0123456789\n")
    new = load_settings({"modules": ["toy"], "signing_keys_file": str(keys_file)}, env={})
    assert new.keys() == [b"key-two-0123456789", b"key-one-0123456789"]

    made_by_old = create_meta(old)
    assert get_phase(new, made_by_old)[0] is Phase.RUNNING  # the previous key still verifies

    made_by_new = create_meta(new)
    phase, message = get_phase(old, made_by_new)  # signed with the new key, unknown to the old host
    assert phase is Phase.FAILED and "sign" in message
    assert "key-two" not in message


def test_print_config_shows_resolved_values_with_keys_masked(monkeypatch):
    monkeypatch.setenv("FLYTECONNECTORS_SIGNING_KEYS", "very-secret-signing-key")
    monkeypatch.setenv("FLYTECONNECTORS_METRICS_PORT", "9191")
    result = CliRunner().invoke(main, ["serve", "--port", "8123", "--print-config"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["port"], shown["metrics_port"], shown["signing_keys"]) == (8123, 9191, ["***"])
    assert "very-secret-signing-key" not in result.output


def test_bad_setting_stops_serve_with_a_one_line_error(monkeypatch):
    monkeypatch.setenv("FLYTECONNECTORS_PORT", "eighty")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code != 0
    assert "FLYTECONNECTORS_PORT" in result.output and "Traceback" not in result.output


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


def test_json_logs_mask_secrets_in_messages_and_tracebacks(restore_logging):
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    REDACTOR.add("tok-3f9a8b7c6d5e")
    try:
        raise RuntimeError("auth failed with tok-3f9a8b7c6d5e")
    except RuntimeError:
        logging.getLogger("flyteconnectors.test").exception("call with %s failed", "tok-3f9a8b7c6d5e",
                                                            extra={"task_type": "toy_job"})
    logging.getLogger("flyteconnectors.test").debug("not shown at INFO")

    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "flyteconnectors.test"
    assert record["message"] == "call with *** failed"
    assert "RuntimeError: auth failed with ***" in record["exception"]
    assert record["task_type"] == "toy_job"
    assert "tok-3f9a8b7c6d5e" not in line


def test_handlers_added_after_configuration_are_masked_too(restore_logging):
    configure_logging("text", "INFO", stream=io.StringIO())
    REDACTOR.add("late-secret-value-42")
    late = io.StringIO()
    logger = logging.getLogger("some.library")
    handler = logging.StreamHandler(late)
    logger.addHandler(handler)
    try:
        logger.warning("using late-secret-value-42")
    finally:
        logger.removeHandler(handler)
    assert late.getvalue().strip() == "using ***"
