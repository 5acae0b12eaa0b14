"""HTTP for the agent: JSON, bearer token, TLS verification, keep-alive, back-off with jitter.

Requests to the server go over persistent HTTP/1.1 connections (``http.client``), kept in a
small pool shared by the agent's threads: a pilot running short jobs talks to the server many
times a second, and a new TCP (and TLS) connection per request would cost more than the request.
A connection the server closed while it was idle (its keep-alive timeout) fails on reuse before
the server saw the request; such a failure is retried at once on a fresh connection and does not
count as a failure. When the environment names an HTTP proxy for the server (``http_proxy``,
``https_proxy``, ``no_proxy``), requests go through ``urllib`` and its proxy handling instead,
one connection each, as before.

Retry rule (the protocol document's "Errors and retries"): connection errors, timeouts, 5xx and
429 are transient and retried with exponential back-off and full jitter, never sooner than a
``Retry-After`` the server gave; any other 4xx is final. 409 is the server saying the attempt is
stale (another pilot owns the job now), which no retry can change, so it raises
:class:`StaleAttempt` at once.

The bearer token goes only to the configured server: :func:`fetch_url` and :func:`put_url` (used
for sandbox URIs on other hosts) never send it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import random
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class TransportError(Exception):
    """Base of the agent's HTTP errors."""


class ServerUnreachable(TransportError):
    """The server could not be reached, or kept answering 5xx/429, within the retry budget."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class ServerRejected(TransportError):
    """A final 4xx answer; ``status`` and the problem ``detail`` say why."""

    def __init__(self, status: int, detail: str, body: Any = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


class StaleAttempt(ServerRejected):
    """409: the attempt is no longer current; the server changed nothing."""


class Backoff:
    """Exponential back-off with full jitter: delay n is uniform in [0, min(cap, base*2**(n-1))].

    Full jitter spreads the retries of many pilots that lost the server at the same moment, so
    they do not return as one wave. A server's ``Retry-After`` is a floor.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ):
        self.base = base
        self.cap = cap
        self.factor = factor
        self.rng = rng

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` consecutive failures (1 or more)."""
        exponent = max(0, failures - 1)
        return min(self.cap, self.base * self.factor ** min(exponent, 64))

    def delay(self, failures: int, retry_after: Optional[float] = None) -> float:
        """The delay before the next try."""
        jittered = self.rng() * self.ceiling(failures)
        if retry_after is not None:
            return max(jittered, min(retry_after, self.cap * 5))
        return jittered


class Response:
    """Status, headers and body of one answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        """The body decoded as JSON (None for an empty body)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


def ssl_context(ca_file: Optional[str] = None, insecure: bool = False) -> ssl.SSLContext:
    """A verifying TLS context (with ``ca_file`` if given); ``insecure`` turns checks off."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _retry_after(headers: Any) -> Optional[float]:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _detail(body: bytes) -> "tuple[str, Any]":
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace"), None
    if isinstance(parsed, dict):
        detail = parsed.get("detail") or parsed.get("title") or json.dumps(parsed)[:200]
        return str(detail), parsed
    return str(parsed)[:200], parsed


def _failure(method: str, url: str, status: int, headers: Any, body: bytes) -> TransportError:
    """The error for a non-2xx answer: 5xx and 429 are transient (retried with back-off,
    honouring Retry-After), 409 is a stale attempt, anything else a refusal."""
    if status >= 500 or status == 429:
        retry_after = _retry_after(headers)
        return ServerUnreachable(f"{method} {url}: HTTP {status}", retry_after=retry_after)
    detail, parsed = _detail(body)
    if status == 409:
        return StaleAttempt(status, detail, parsed)
    return ServerRejected(status, detail, parsed)


_TRANSIENT = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    socket.timeout,
    TimeoutError,
)


def _rewind(body: Any) -> bool:
    """Make ``body`` sendable again (a file is rewound); False if it cannot be."""
    if body is None or isinstance(body, (bytes, bytearray)):
        return True
    try:
        body.seek(0)
    except (AttributeError, OSError, ValueError):
        return False
    return True


_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)
"""Errors of a reused keep-alive connection that the server had already closed."""

_MAX_IDLE = 4
"""Idle connections kept per server: the main loop, the long poll and a few job threads."""


class ConnectionPool:
    """Idle keep-alive connections to one server, shared by the agent's threads."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: Optional[int],
        context: Optional[ssl.SSLContext],
        max_idle: int = _MAX_IDLE,
    ):
        self.scheme = scheme
        self.host = host
        self.port = port
        self.context = context
        self.max_idle = max_idle
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, timeout: float) -> "tuple[http.client.HTTPConnection, bool]":
        """A connection with ``timeout`` set, and whether it was used before."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._new(timeout), False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _new(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def put(self, conn: http.client.HTTPConnection) -> None:
        """Give back a connection whose last answer was read to its end."""
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _uses_proxy(url: str) -> bool:
    """Whether urllib would send a request for ``url`` through a proxy of the environment."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class Transport:
    """Requests to one server with a bearer token; retries as the module docstring says."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        ca_file: Optional[str] = None,
        insecure: bool = False,
        timeout: float = 30.0,
        backoff: Optional[Backoff] = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "pilotwms-agent",
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.user_agent = user_agent
        self.context = ssl_context(ca_file, insecure) if base_url.startswith("https") else None
        parts = urllib.parse.urlsplit(self.base_url)
        self.pool: Optional[ConnectionPool] = None
        if parts.scheme in ("http", "https") and not _uses_proxy(self.base_url):
            # http.client takes a port-less IPv6 literal's last ':' for the port: always pass it.
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.pool = ConnectionPool(parts.scheme, parts.hostname or "", port, self.context)

    def close(self) -> None:
        """Close the idle keep-alive connections (a later request opens a new one)."""
        if self.pool is not None:
            self.pool.close()

    def url(self, path: str, params: Optional[Mapping[str, str]] = None) -> str:
        """Absolute URL of ``path`` on the server with query ``params``."""
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return url

    def _once(
        self,
        *,
        method: str,
        url: str,
        body: Any,
        headers: Dict[str, str],
        timeout: float,
        sink: Optional[Callable[[Any], None]],
    ) -> Response:
        if self.pool is None:
            return self._once_urllib(
                method=method, url=url, body=body, headers=headers, timeout=timeout, sink=sink
            )
        parts = urllib.parse.urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        while True:
            conn, reused = self.pool.get(timeout)
            try:
                conn.request(method, target, body=body, headers=headers)
                reply = conn.getresponse()
            except _STALE_CONNECTION as exc:
                conn.close()
                if reused and _rewind(body):
                    log.debug(
                        "%s %s: kept-alive connection was closed (%s); reconnecting",
                        method,
                        url,
                        exc,
                    )
                    continue
                raise ServerUnreachable(f"{method} {url}: {exc}") from None
            except (*_TRANSIENT, OSError) as exc:
                conn.close()
                raise ServerUnreachable(f"{method} {url}: {exc}") from None
            try:
                return self._answer(method, url, conn, reply, sink)
            except _TRANSIENT as exc:
                conn.close()
                raise ServerUnreachable(f"{method} {url}: {exc}") from None

    def _answer(
        self,
        method: str,
        url: str,
        conn: http.client.HTTPConnection,
        reply: http.client.HTTPResponse,
        sink: Optional[Callable[[Any], None]],
    ) -> Response:
        """Read one answer to its end, give the connection back, and apply the retry rule."""
        status = reply.status
        headers = dict(reply.getheaders())
        try:
            if sink is not None and 200 <= status < 300:
                sink(reply)
                reply.read()  # whatever the sink left, so the connection can be reused
                data = b""
            else:
                data = reply.read()
        except BaseException:
            conn.close()
            raise
        assert self.pool is not None
        if reply.will_close:
            conn.close()
        else:
            self.pool.put(conn)
        if 200 <= status < 300:
            return Response(status, headers, data)
        raise _failure(method, url, status, reply.headers, data)

    def _once_urllib(
        self,
        *,
        method: str,
        url: str,
        body: Any,
        headers: Dict[str, str],
        timeout: float,
        sink: Optional[Callable[[Any], None]],
    ) -> Response:
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as reply:
                if sink is not None and 200 <= reply.status < 300:
                    sink(reply)
                    return Response(reply.status, dict(reply.headers), b"")
                return Response(reply.status, dict(reply.headers), reply.read())
        except urllib.error.HTTPError as err:
            data = err.read() if err.fp is not None else b""
            raise _failure(method, url, err.code, err.headers, data) from None
        except _TRANSIENT as exc:
            raise ServerUnreachable(f"{method} {url}: {exc}") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body_file: Optional[Path] = None,
        params: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        attempts: int = 1,
        sink: Optional[Callable[[Any], None]] = None,
    ) -> Response:
        """Send one request, retrying transient failures up to ``attempts`` tries in all.

        ``body_file`` streams a file as the body (reopened on each try); ``sink`` receives the
        open reply of a successful answer to stream it somewhere instead of into memory.
        """
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        url = self.url(path, params)
        failures = 0
        while True:
            with contextlib.ExitStack() as stack:
                body: Any = None
                if json_body is not None:
                    body = json.dumps(json_body).encode("utf-8")
                elif body_file is not None:
                    body = stack.enter_context(open(body_file, "rb"))
                    headers["Content-Type"] = "application/octet-stream"
                    headers["Content-Length"] = str(body_file.stat().st_size)
                try:
                    return self._once(
                        method=method,
                        url=url,
                        body=body,
                        headers=headers,
                        timeout=timeout or self.timeout,
                        sink=sink,
                    )
                except ServerUnreachable as exc:
                    failures += 1
                    if failures >= attempts:
                        raise
                    retry_after = exc.retry_after
            delay = self.backoff.delay(failures, retry_after)
            log.info("%s %s failed; retry %d in %.1f s", method, path, failures, delay)
            self.sleep(delay)

    def download(self, path: str, dest: Path, *, attempts: int = 5) -> str:
        """Stream ``path`` into ``dest``; returns the sha256 hex digest of what was written."""

        digests = []

        def sink(reply: Any) -> None:
            digest = hashlib.sha256()
            with open(dest, "wb") as out:
                for chunk in iter(lambda: reply.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            digests.append(digest.hexdigest())

        self.request("GET", path, sink=sink, attempts=attempts, timeout=max(self.timeout, 300))
        return digests[-1]


def fetch_url(
    url: str,
    dest: Path,
    *,
    context: Optional[ssl.SSLContext] = None,
    timeout: float = 300.0,
) -> str:
    """Download an ``http(s)://`` or ``file://`` URL into ``dest`` without any credentials.

    Returns the sha256 hex digest of the content. Errors propagate as :class:`TransportError`
    (HTTP) or ``OSError`` (files).
    """
    digest = hashlib.sha256()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "file":
        source = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        with open(source, "rb") as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()
    if scheme not in ("http", "https"):
        raise TransportError(f"unsupported URL scheme in {url!r}")
    try:
        # Two statements, not a parenthesised ``with (...)``: that form is Python 3.10's.
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:  # noqa: SIM117
            with open(dest, "wb") as out:
                for chunk in iter(lambda: reply.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
    except urllib.error.HTTPError as err:
        raise ServerRejected(err.code, f"GET {url} failed") from None
    except _TRANSIENT as exc:
        raise ServerUnreachable(f"GET {url}: {exc}") from None
    return digest.hexdigest()


def put_url(
    url: str,
    source: Path,
    *,
    context: Optional[ssl.SSLContext] = None,
    timeout: float = 300.0,
) -> None:
    """Upload ``source`` to an ``http(s)://`` URL with PUT, or copy it to a ``file://`` URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        target = Path(urllib.request.url2pathname(parts.path))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return
    if scheme not in ("http", "https"):
        raise TransportError(f"unsupported URL scheme in {url!r}")
    with open(source, "rb") as body:
        request = urllib.request.Request(
            url,
            data=body,
            method="PUT",
            headers={
                "Content-Length": str(source.stat().st_size),
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context):
                pass
        except urllib.error.HTTPError as err:
            raise ServerRejected(err.code, f"PUT {url} failed") from None
        except _TRANSIENT as exc:
            raise ServerUnreachable(f"PUT {url}: {exc}") from None
