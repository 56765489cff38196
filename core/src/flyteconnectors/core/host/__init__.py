"""The connector host behind ``flyteconnectors serve``.

- ``settings``: the one documented set of options (flags, ``FLYTECONNECTORS_*`` variables, TOML file).
- ``app``: builds the registry, dispatcher and server from the settings; runs one process until SIGTERM.
- ``server``: the grpc.aio server with health, reflection, TLS/mTLS and the drain.
- ``services_v1``/``wire_v1``: flyteidl's Agent services exactly as FlytePropeller calls them.
- ``workers``: ``--workers N`` processes sharing one port, with merged metrics.
- ``logs``: text or JSON logs with secrets masked; ``watchdog``: event-loop lag.

Nothing here imports a service SDK: connector modules import theirs on first use, so start-up stays fast.
"""
