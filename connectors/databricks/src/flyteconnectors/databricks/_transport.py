"""A cheaper requests session under databricks-sdk's ApiClient (imported lazily, with the SDK).

The SDK sends every call through ``requests.Session.request``. Per call, requests re-merges the session's
settings with generic helpers (runtime ``Protocol`` checks, cookie-jar merges), re-reads the proxy and CA-bundle
environment variables, re-derives the urllib3 pool key and stats the CA bundle. Under a host's load that is about
half the Python time of a status read. Here the same session does the same work once per endpoint:

* :class:`LeanSession` caches :meth:`merge_environment_settings` per (scheme://host, stream) and prepares simple
  requests (no cookies, files or per-request auth: every SDK call) without the generic merges;
* :class:`PooledAdapter` remembers the urllib3 pool per (scheme, host, port, verify, cert) and checks the CA
  bundle path once per pool.

Everything else stays requests: ``Session.send`` (hooks, cookies set by the service, redirects), the adapter's
``send`` (TLS, timeouts, errors as requests exceptions, which the SDK's retry and error parsing rely on). Any
request off the simple path takes requests' own code unchanged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import requests.adapters
from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest, Request
from requests.structures import CaseInsensitiveDict


class PooledAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, remembering the urllib3 pool (and its CA checks) of each endpoint it talks to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pools: dict[tuple[Any, ...], Any] = {}
        super().__init__(*args, **kwargs)

    def get_connection_with_tls_context(self, request: PreparedRequest, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> Any:
        if proxies or not isinstance(verify, (bool, str)) or not isinstance(cert, (str, type(None))):
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        parts = urlsplit(str(request.url))
        key = (parts.scheme.lower(), parts.netloc.lower(), verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # unknown, or closed (the pool manager evicted or cleared it)
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            self._pools[key] = pool
        return pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Stats the CA bundle and sets the same attributes on the pool every call: once per pool and settings.
        done = (verify, cert)
        if getattr(conn, "_flyteconnectors_verified", None) == done:
            return
        super().cert_verify(conn, url, verify, cert)
        conn._flyteconnectors_verified = done

    def close(self) -> None:
        self._pools.clear()
        super().close()


class LeanSession(requests.Session):
    """A ``requests.Session`` whose per-call preparation is cheap for the simple requests the SDK sends."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, Any], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(str(url))
        key = (f"{parts.scheme}://{parts.netloc}".lower(), stream)
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, stream, None, None)
            self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"] or {})}

    def prepare_request(self, request: Request) -> PreparedRequest:
        if (request.cookies or len(self.cookies) or request.files or request.auth is not None or self.auth is None
                or self.params or not isinstance(request.params, dict) or self.hooks.get("response")
                or not isinstance(request.headers, dict)):
            return super().prepare_request(request)
        # What Session.prepare_request + PreparedRequest.prepare do for such a request, in their order.
        prepared = PreparedRequest()
        prepared.prepare_method(request.method)
        prepared.prepare_url(request.url, _encode_params(request.params))
        headers = CaseInsensitiveDict(self.headers)
        headers.update(request.headers)
        prepared.prepare_headers({k: v for k, v in headers.items() if v is not None})
        prepared._cookies = RequestsCookieJar()  # no cookies anywhere: no Cookie header either
        prepared.prepare_body(request.data, request.files, request.json)
        prepared.prepare_auth(self.auth, request.url)
        prepared.prepare_hooks(request.hooks)
        return prepared


def _encode_params(params: dict[Any, Any]) -> str:
    """``PreparedRequest._encode_params`` of a dict (the same query string), without its generic type checks."""
    pairs: list[tuple[Any, Any]] = []
    for key, values in params.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            values = [values]
        for value in values:
            if value is not None:
                pairs.append((key.encode("utf-8") if isinstance(key, str) else key,
                              value.encode("utf-8") if isinstance(value, str) else value))
    return urlencode(pairs, doseq=True)


def install(api_client: Any, pool_size: int) -> bool:
    """Replace the SDK's session (``_BaseClient._session``) with a lean one: same auth, headers and pool size.

    Both ``https://`` and ``http://`` (a local fake or proxy sidecar) get the sized pool. Returns False, leaving the
    SDK's session alone, when this SDK version keeps its session elsewhere.
    """
    base = getattr(api_client, "_api_client", None)
    old = getattr(base, "_session", None)
    if not isinstance(old, requests.Session) or not callable(getattr(base, "_authenticate", None)):
        return False
    session = LeanSession()
    session.auth = old.auth
    session.headers = old.headers
    session.verify = old.verify
    session.cert = old.cert
    session.proxies = old.proxies
    session.trust_env = old.trust_env
    adapter = PooledAdapter(pool_connections=pool_size, pool_maxsize=pool_size, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    base._session = session
    old.close()
    return True
