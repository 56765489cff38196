"""Host configuration: one documented set of options, from flags, environment variables or a TOML file.

Precedence, lowest first: built-in default < config file < environment variable < command-line flag.
The config file is named by ``--config`` or ``FLYTECONNECTORS_CONFIG``. Top-level keys are the options
below; ``[connectors.<package>]`` tables hold each connector package's settings (its ``ConnectorSettings``:
endpoint overrides for private endpoints or the local fakes, ``executor_threads``, ``async_mode``, ...). Environment
variables ``FLYTECONNECTORS_<PACKAGE>_<FIELD>`` override those tables field by field.

==================  ==================================  ===================  =========================================
key                 environment variable                flag                 meaning
==================  ==================================  ===================  =========================================
bind                FLYTECONNECTORS_BIND                --bind / --host      address the gRPC port listens on
port                FLYTECONNECTORS_PORT                --port               gRPC port (0 picks a free one)
metrics_port        FLYTECONNECTORS_METRICS_PORT        --metrics-port       Prometheus /metrics port (0 disables)
metrics_bind        FLYTECONNECTORS_METRICS_BIND        --metrics-bind       address of the metrics endpoint
workers             FLYTECONNECTORS_WORKERS             --workers            server processes sharing the port
executor_threads    FLYTECONNECTORS_EXECUTOR_THREADS    --executor-threads   default thread pool size per package
async_mode          FLYTECONNECTORS_ASYNC_MODE          --async-mode         default of each package's ``async_mode``:
                                                                             where its ``async def`` methods run
                                                                             (``auto``, ``loop``, ``isolated``)
event_loop          FLYTECONNECTORS_EVENT_LOOP          --event-loop         ``auto`` (uvloop when installed, as on
                                                                             Linux and macOS), ``uvloop``, ``asyncio``
grace_period        FLYTECONNECTORS_GRACE_PERIOD        --grace-period       seconds in-flight calls get on SIGTERM
drain_delay         FLYTECONNECTORS_DRAIN_DELAY         --drain-delay        seconds NOT_SERVING before refusing calls
deadline_margin     FLYTECONNECTORS_DEADLINE_MARGIN     --deadline-margin    seconds kept back from each RPC deadline
unavailable_grace   FLYTECONNECTORS_UNAVAILABLE_GRACE   --unavailable-grace  seconds a service may be unreachable
                                                                             before GetTask answers RETRYABLE_FAILED
client_idle_timeout FLYTECONNECTORS_CLIENT_IDLE_TIMEOUT --client-idle-timeout seconds a cached service client may
                                                                             stay unused before it is closed, with
                                                                             its pooled connections (0: never)
max_message_bytes   FLYTECONNECTORS_MAX_MESSAGE_BYTES   --max-message-bytes  gRPC message size limit
tls_cert            FLYTECONNECTORS_TLS_CERT            --tls-cert           server certificate chain (PEM file)
tls_key             FLYTECONNECTORS_TLS_KEY             --tls-key            server private key (PEM file)
tls_client_ca       FLYTECONNECTORS_TLS_CLIENT_CA       --tls-client-ca      CA bundle; clients must present a cert
                                                                             signed by it (mTLS)
log_format          FLYTECONNECTORS_LOG_FORMAT          --log-format         ``text`` or ``json``
log_level           FLYTECONNECTORS_LOG_LEVEL           --log-level          DEBUG, INFO, WARNING, ERROR
enabled             FLYTECONNECTORS_ENABLED             --connectors         packages to serve (default: all installed)
modules             FLYTECONNECTORS_MODULES             --module             extra ``pkg.mod[:ATTR]`` connector modules
secrets_dirs        FLYTECONNECTORS_SECRETS_DIR         --secrets-dir        directories of mounted secret files
signing_keys        FLYTECONNECTORS_SIGNING_KEYS        (none: not on argv)  resource_meta HMAC keys; the first signs,
                                                                             every key verifies (rotation)
signing_keys_file   FLYTECONNECTORS_SIGNING_KEYS_FILE   --signing-keys-file  file with one signing key per line
==================  ==================================  ===================  =========================================

Lists in environment variables are comma-separated (``secrets_dirs`` uses the path separator, as before).
Insecure gRPC is the default, as Propeller's default is insecure; ``tls_cert`` and ``tls_key`` together
turn TLS on, and ``tls_client_ca`` additionally requires client certificates.

Example ``flyteconnectors.toml``::

    port = 8000
    metrics_port = 9090
    workers = 2
    log_format = "json"
    enabled = ["bigquery", "snowflake"]
    signing_keys_file = "/etc/secrets/meta-signing-keys"

    [connectors.bigquery]
    endpoint = "http://bigquery-fake:9050"
    executor_threads = 32

    [connectors.openai]
    async_mode = "isolated"   # or FLYTECONNECTORS_OPENAI_ASYNC_MODE=isolated
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "FLYTECONNECTORS_"
CONFIG_ENV = "FLYTECONNECTORS_CONFIG"


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the key and where it came from."""


@dataclass(frozen=True)
class Option:
    """One host option: its key (config file and attribute), type, flag and help."""

    key: str
    kind: str  # "str" | "int" | "float" | "list" | "path" | "choice"
    help: str
    flag: str | None = None
    choices: tuple[str, ...] = ()
    env: str = ""
    #: Separator of list values in the environment.
    sep: str = ","
    secret: bool = False

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.key.upper()


OPTIONS: tuple[Option, ...] = (
    Option("bind", "str", "Address the gRPC port listens on.", "--bind"),
    Option("port", "int", "gRPC port; 0 picks a free one.", "--port"),
    Option("metrics_port", "int", "Prometheus /metrics port; 0 disables it.", "--metrics-port"),
    Option("metrics_bind", "str", "Address of the metrics endpoint.", "--metrics-bind"),
    Option("workers", "int", "Server processes sharing the gRPC port (SO_REUSEPORT).", "--workers"),
    Option("executor_threads", "int", "Default thread-pool size of each connector package.", "--executor-threads"),
    Option("async_mode", "choice", "Default of each package's async_mode: where its 'async def' methods run: 'loop' "
           "(the host's event loop), 'isolated' (the package's own event loops) or 'auto' (the host's loop until "
           "the package's code stalls it).", "--async-mode", choices=("auto", "loop", "isolated")),
    Option("event_loop", "choice", "The host's event loop: 'uvloop' (libuv; less CPU per RPC), 'asyncio' (the "
           "standard library's) or 'auto' (uvloop when it is installed).", "--event-loop",
           choices=("auto", "uvloop", "asyncio")),
    Option("grace_period", "float", "Seconds in-flight calls may take to finish after SIGTERM.", "--grace-period"),
    Option("drain_delay", "float", "Seconds to report NOT_SERVING before refusing new calls on SIGTERM.",
           "--drain-delay"),
    Option("deadline_margin", "float", "Seconds kept back from every RPC deadline for the answer.",
           "--deadline-margin"),
    Option("unavailable_grace", "float",
           "Seconds a service may stay unreachable before GetTask answers RETRYABLE_FAILED.", "--unavailable-grace"),
    Option("client_idle_timeout", "float",
           "Seconds a cached service client may stay unused before it is closed with its keep-alive connections "
           "(rebuilt on next use; 0: keep clients until the host drains).", "--client-idle-timeout"),
    Option("max_message_bytes", "int", "gRPC send/receive message size limit.", "--max-message-bytes"),
    Option("warm_up", "choice", "Import each connector's SDK in its threads right after start-up, so the first "
           "call does not pay for it (off: on first use).", "--warm-up", choices=("on", "off")),
    Option("tls_cert", "path", "Server certificate chain (PEM). With --tls-key, serves TLS.", "--tls-cert"),
    Option("tls_key", "path", "Server private key (PEM).", "--tls-key"),
    Option("tls_client_ca", "path", "CA bundle (PEM) that client certificates must chain to (mTLS).",
           "--tls-client-ca"),
    Option("log_format", "choice", "Log line format.", "--log-format", choices=("text", "json")),
    Option("log_level", "choice", "Log level.", "--log-level",
           choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Option("enabled", "list", "Connector packages to serve, comma-separated (default: every installed one).",
           "--connectors"),
    Option("modules", "list", "Extra connector modules 'pkg.mod[:ATTR]' (ATTR defaults to CONNECTORS); "
           "'name=pkg.mod:ATTR' names the package.", "--module"),
    Option("secrets_dirs", "list", "Directories of mounted secret files.", "--secrets-dir",
           env="FLYTECONNECTORS_SECRETS_DIR", sep=os.pathsep),
    Option("signing_keys", "list", "resource_meta HMAC keys; the first signs, all verify.", None, secret=True),
    Option("signing_keys_file", "path", "File with one resource_meta signing key per line.", "--signing-keys-file"),
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}


@dataclass
class HostSettings:
    """The resolved host configuration. Build it with :func:`load_settings`."""

    bind: str = "[::]"
    port: int = 8000
    metrics_port: int = 9090
    metrics_bind: str = "0.0.0.0"
    workers: int = 1
    executor_threads: int = 64
    async_mode: str = "auto"
    event_loop: str = "auto"
    # Kubernetes sends SIGKILL 30 s after SIGTERM by default; finish before that.
    grace_period: float = 25.0
    drain_delay: float = 0.0
    deadline_margin: float = 0.5
    unavailable_grace: float = 900.0
    #: Far longer than a keep-alive pool needs between bursts, far shorter than "forever".
    client_idle_timeout: float = 60.0
    max_message_bytes: int = 4 * 1024 * 1024
    warm_up: str = "on"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    enabled: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    secrets_dirs: list[str] | None = None
    signing_keys: list[str] = field(default_factory=list)
    signing_keys_file: str | None = None
    #: ``[connectors.<package>]`` tables of the config file.
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where the config file came from, for messages.
    config_file: str | None = None

    # ------------------------------------------------------------------ derived values
    def keys(self) -> list[bytes]:
        """Signing keys: inline ones first, then those in ``signing_keys_file``."""
        keys = [k.strip() for k in self.signing_keys if k.strip()]
        if self.signing_keys_file:
            try:
                text = Path(self.signing_keys_file).read_text()
            except OSError as err:
                raise SettingsError(f"signing_keys_file {self.signing_keys_file}: {err.strerror}") from None
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return [k.encode() for k in keys]

    def tls_material(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(cert, key, client CA) PEM bytes, read from the configured files."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("tls_cert and tls_key must be set together (FLYTECONNECTORS_TLS_CERT/_TLS_KEY)")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError("tls_client_ca (mTLS) needs tls_cert and tls_key as well")
        return _read_pem(self.tls_cert, "tls_cert"), _read_pem(self.tls_key, "tls_key"), _read_pem(
            self.tls_client_ca, "tls_client_ca"
        )

    def settings_source(self) -> Callable[[str], Mapping[str, Any]]:
        """What the registry feeds to each package's ``ConnectorSettings.load`` (env still wins)."""
        default_threads, async_mode = self.executor_threads, self.async_mode
        tables = self.connectors

        def source(package: str) -> Mapping[str, Any]:
            return {"executor_threads": default_threads, "async_mode": async_mode, **tables.get(package, {})}

        return source

    def public_dict(self) -> dict[str, Any]:
        """The settings with secret values masked, for ``--print-config`` and the start-up log."""
        data = dataclasses.asdict(self)
        if data["signing_keys"]:
            data["signing_keys"] = ["***"] * len(data["signing_keys"])
        return data

    def to_json(self) -> str:
        """Full settings (secrets included) for handing to worker processes."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> HostSettings:
        return cls(**json.loads(text))


def _read_pem(path: str | None, key: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SettingsError(f"{key} {path}: {err.strerror}") from None


def _convert(option: Option, value: Any, origin: str) -> Any:
    where = f"{option.key} ({origin})"
    try:
        if option.kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if option.kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if option.kind == "list":
            if isinstance(value, str):
                return [v.strip() for v in value.split(option.sep) if v.strip()]
            if isinstance(value, (list, tuple)):
                return [str(v).strip() for v in value if str(v).strip()]
            raise ValueError
        if option.kind == "choice":
            text = str(value)
            for choice in option.choices:
                if text.lower() == choice.lower():
                    return choice
            raise SettingsError(f"{where}: {text!r} is not one of {', '.join(option.choices)}")
        if not isinstance(value, str):
            raise ValueError
        return (value or None) if option.kind == "path" else value
    except (TypeError, ValueError) as err:
        if isinstance(err, SettingsError):
            raise
        raise SettingsError(f"{where}: {value!r} is not a valid {option.kind}") from None


def read_config_file(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise SettingsError(
                f"reading {path} needs Python >= 3.11 or the 'tomli' package on Python 3.10"
            ) from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as err:
        raise SettingsError(f"config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"config file {path}: {err}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> HostSettings:
    """Resolve the settings: defaults < config file < environment < flags (``None`` flags are unset)."""
    env = os.environ if env is None else env
    settings = HostSettings()
    path = config_file or env.get(CONFIG_ENV) or None
    if path:
        data = read_config_file(path)
        settings.config_file = path
        tables = data.pop("connectors", {})
        if not isinstance(tables, dict) or any(not isinstance(v, dict) for v in tables.values()):
            raise SettingsError(f"config file {path}: 'connectors' must hold [connectors.<package>] tables")
        settings.connectors = {str(k): dict(v) for k, v in tables.items()}
        unknown = sorted(set(data) - set(OPTIONS_BY_KEY))
        if unknown:
            raise SettingsError(
                f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(OPTIONS_BY_KEY)}"
                " and [connectors.<package>] tables"
            )
        for key, value in data.items():
            setattr(settings, key, _convert(OPTIONS_BY_KEY[key], value, path))
    for option in OPTIONS:
        raw = env.get(option.env_name)
        if raw is not None and raw != "":
            setattr(settings, option.key, _convert(option, raw, option.env_name))
    for key, value in (flags or {}).items():
        if value is None or value == () or value == []:
            continue
        option = OPTIONS_BY_KEY[key]
        if option.kind == "list" and isinstance(value, (list, tuple)):
            # repeated flags, each possibly comma-separated
            value = [part for item in value for part in _convert(option, item, option.flag or key)]
        setattr(settings, key, _convert(option, value, option.flag or key))
    _validate(settings)
    return settings


def _validate(settings: HostSettings) -> None:
    for key in ("port", "metrics_port"):
        value = getattr(settings, key)
        if not 0 <= value <= 65535:
            raise SettingsError(f"{key}: {value} is not a port number")
    if settings.workers < 1:
        raise SettingsError(f"workers: {settings.workers}; need at least 1")
    if settings.executor_threads < 1:
        raise SettingsError(f"executor_threads: {settings.executor_threads}; need at least 1")
    for key in ("grace_period", "drain_delay", "deadline_margin", "unavailable_grace", "client_idle_timeout"):
        if getattr(settings, key) < 0:
            raise SettingsError(f"{key}: must not be negative")
    if settings.max_message_bytes < 1024:
        raise SettingsError("max_message_bytes: too small")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SettingsError("tls_cert and tls_key must be set together")
    if settings.tls_client_ca and not settings.tls_cert:
        raise SettingsError("tls_client_ca (mTLS) needs tls_cert and tls_key as well")
