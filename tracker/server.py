"""Run the server: bind the port, bring up Redis (embedded or given), serve with uvicorn.

Shutdown (SIGINT, SIGTERM, or SIGHUP: the terminal closed) stops accepting, closes every
WebSocket with 1001, drains in-flight requests for up to ``shutdown_grace_s``, stops the
features, then stops the embedded Redis (which flushes its AOF). An embedded Redis that exits
by itself is restarted on its data folder; if it cannot be, the server shuts down the same way
and exits 1.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import logging
import signal
import socket
from typing import Any, Iterator

import redis
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tracker import agreement
from tracker.app import KERNEL, create_app
from tracker.auth import load_or_create_secret
from tracker.clock import Clock
from tracker.embedded_redis import EmbeddedRedis
from tracker.errors import ServerLost, StartupError
from tracker.http.head_timeout import head_timeout_protocol
from tracker.open_files import connection_limit, raise_open_files_limit, redis_pool_size, socket_budget
from tracker.redis_client import ClusterNotOk, check_cluster, cluster_enabled, first_answering, redacted_url
from tracker.settings import Settings
from tracker.wsconn import WsHub

log = logging.getLogger("tracker.server")

WS_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # hard protocol cap; the app answers >max_frame_bytes with too_large
TOO_FEW_SOCKETS = 16  # an open-file limit that leaves fewer is warned about at start
ABORT_AFTER_CLOSE_S = 5.0  # how long a closed WebSocket connection may take to flush before it is dropped
HUB_CLOSE_WAIT_S = 5.0  # how long shutdown waits for the app's 1001 closes (a stalled peer's never completes)


def bounded_websocket_protocol(send_buffer_bytes: int) -> type[WebSocketsSansIOProtocol]:
    """uvicorn's WebSocket protocol with a fixed kernel send buffer per connection, which drops
    (aborts) a connection still there 5 s after a keepalive timeout or a shutdown closed it.

    Linux grows a socket's send buffer up to 4 MiB for a peer that stops reading; a fixed
    ``SO_SNDBUF`` bounds the memory one connection can hold and makes a stalled client block
    the sender soon, so the bounded subscriber queues notice it and cut it off.
    """

    class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
                except OSError:  # pragma: no cover - not a TCP socket
                    pass
            super().connection_made(transport)

        def _abort_unless_gone(self) -> None:
            """uvicorn closes the transport, which first flushes what is buffered: a peer that
            never reads never lets it, and the connection (and the app's blocked sends, and a
            graceful shutdown) would wait for ever. Drop it if it is still there soon after."""
            def abort() -> None:
                if not self.disconnected:
                    self.transport.abort()
            self.loop.call_later(ABORT_AFTER_CLOSE_S, abort)

        def keepalive_timeout(self) -> None:  # a ping left unanswered: the peer is gone or stalled
            super().keepalive_timeout()
            self._abort_unless_gone()

        def shutdown(self) -> None:  # the server is stopping
            super().shutdown()
            self._abort_unless_gone()

    return BoundedWebSocketProtocol


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Server(uvicorn.Server):
    """uvicorn's server, closing our WebSockets with 1001 before uvicorn's own shutdown."""

    def __init__(self, config: uvicorn.Config, hub: WsHub) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        try:  # (a close to a peer that stopped reading waits on a send that never completes)
            async with asyncio.timeout(HUB_CLOSE_WAIT_S):
                await self._hub.close_all()
        except TimeoutError:
            # Dropped now: left to uvicorn, each would get another ABORT_AFTER_CLOSE_S from its own
            # shutdown, spent out of the in-flight HTTP requests' grace.
            stalled = [conn for conn in self.server_state.connections
                       if isinstance(conn, WebSocketsSansIOProtocol) and not conn.disconnected]
            for conn in stalled:
                conn.transport.abort()
            log.warning("%d WebSocket(s) did not take their close within %.0f s (their peers stopped reading); "
                        "dropped them", len(stalled), HUB_CLOSE_WAIT_S)
        await super().shutdown(sockets)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use; choose another with --port") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def answering_address(url: str, timeout: float = 5.0) -> str:
    """The address of ``url`` to start from: the first that answers when it names several (a
    Redis Cluster's nodes; refused, with one line, when that Redis is not in cluster mode)."""
    try:
        seed = first_answering(url, timeout)
        if seed != url and not cluster_enabled(seed, timeout):
            raise StartupError(f"REDIS_URL names several addresses, which is for the nodes of one Redis Cluster, but "
                               f"the Redis at {redacted_url(seed)} is not in cluster mode: name it alone")
        return seed
    except (redis.RedisError, OSError) as exc:
        raise StartupError(unreachable(url, exc)) from None


def unreachable(url: str, exc: BaseException) -> str:
    """The one line for a Redis that would not serve us: a password it wants said as such (redis-py
    reports a HELLO or NOAUTH refusal), anything else as it came."""
    said = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in said or "already authenticated" in said:
        return (f"the Redis at REDIS_URL={redacted_url(url)} needs a password (or another one): give it in the URL, "
                f"redis://:PASSWORD@host:port (or redis://USER:PASSWORD@host:port), percent-encoded ({said})")
    return f"cannot reach Redis at REDIS_URL={redacted_url(url)}: {said}"


def check_redis(url: str, timeout: float = 5.0) -> int:
    """Fail with one clear line when the configured Redis does not answer; return its primaries
    (1 for a single Redis)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        warn_about_redis_config(client)
        return check_cluster(url, timeout)  # a cluster must be able to serve every slot
    except ClusterNotOk as exc:
        raise StartupError(str(exc)) from None
    except (redis.RedisError, OSError, ValueError) as exc:
        raise StartupError(unreachable(url, exc)) from None
    finally:
        client.close()


def warn_about_redis_config(client: redis.Redis) -> None:
    """Warn (one line each) when the shared Redis would lose the fleet's data: no append-only
    file (a restart loses what was written since its last snapshot, if it takes any), or a
    memory limit with a policy that evicts keys (orders, offers, revocations). Managed Redis
    services often refuse CONFIG: then nothing is said."""
    try:
        config = client.config_get("appendonly") | client.config_get("maxmemory") | client.config_get("maxmemory-policy")
    except redis.RedisError:
        return
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in config.items()}
    if text.get("appendonly") == "no":
        log.warning("the Redis at REDIS_URL keeps no append-only file: a restart loses the orders, offers and "
                    "token revocations written since its last snapshot; run it with appendonly yes")
    if text.get("maxmemory", "0") != "0" and text.get("maxmemory-policy", "noeviction") != "noeviction":
        log.warning("the Redis at REDIS_URL evicts keys when full (maxmemory-policy %s): orders and offers would "
                    "vanish; run it with maxmemory-policy noeviction", text["maxmemory-policy"])


@contextlib.contextmanager
def _agreement_refusals(url: str) -> Iterator[None]:
    """A start check of :mod:`agreement` on ``url``: its disagreement, or a Redis that does not
    answer, is the server's one-line refusal to start."""
    try:
        yield
    except agreement.Disagreement as exc:
        raise StartupError(str(exc)) from None
    except agreement.SYNC_REDIS_ERRORS as exc:
        raise StartupError(unreachable(url, exc)) from None


def check_agreement(url: str, scale: float, secret: str, *, cluster: bool) -> None:
    """Refuse to join servers on ``url`` whose clock or secret this one's cannot agree with (:mod:`agreement`)."""
    with _agreement_refusals(url):
        agreement.check_at_start(url, scale, secret, cluster=cluster)


def start_clock(url: str, settings: Settings, *, embedded: bool, cluster: bool) -> Clock:
    """The server's clock: the wall clock, or a scaled one resumed where the last scaled run on this
    Redis left off; refused with one line when a real-speed server's Redis is stamped ahead of it
    (:func:`agreement.start_clock`). Only a ``REDIS_URL`` Redis is told to delete the mark: an
    embedded one is not running once the server refuses to start."""
    where, own = ((f"the data folder {settings.data_dir}", "a data folder (TRACKER_DATA_DIR)") if embedded
                  else (f"the Redis at REDIS_URL={redacted_url(url)}", "a Redis"))
    with _agreement_refusals(url):
        return agreement.start_clock(url, settings.time_scale, cluster=cluster, where=where, own=own,
                                     mark_deletable=not embedded)


def mark_stopped(url: str, clock: Clock, *, cluster: bool) -> None:
    """After a clean stop of a scaled server, its clock mark at its time now, so that its next
    start resumes there exactly; if Redis does not take it, the last refreshed mark (a little
    further ahead) stands, and says so. ``url``: every address of ``REDIS_URL`` (the one the
    server started from may be down by now)."""
    if clock.scale == 1.0:
        return
    try:
        agreement.mark_stopped(url, clock, cluster=cluster)
    except agreement.SYNC_REDIS_ERRORS as exc:
        log.warning("could not leave the scaled clock's mark in Redis at its stop (%s): a restart resumes it up to "
                    "%.0f real seconds later", exc, agreement.MARK_LEAD_S)


def _with_socket_limit(settings: Settings, budget: int) -> Settings:
    """Unset ``max_sockets`` becomes ``budget`` (what the open files leave room for); a set one
    above it is kept, with a warning: the process would run out of files first."""
    if budget < TOO_FEW_SOCKETS:
        log.warning("the open-file limit leaves room for only %d WebSocket(s) once Redis and the rest have their "
                    "files: raise the hard limit (ulimit -Hn) for a server that takes riders", budget)
    if settings.max_sockets is None:
        return dataclasses.replace(settings, max_sockets=budget)
    if settings.max_sockets > budget:
        log.warning("TRACKER_MAX_SOCKETS=%d is more than this process's open-file limit leaves room for (%d): "
                    "past that, connections to Redis fail; raise the hard limit (ulimit -Hn) or lower the setting",
                    settings.max_sockets, budget)
    return settings


def serve(settings: Settings, **uvicorn_overrides: Any) -> None:
    """Run the server until SIGINT/SIGTERM. Raises :class:`StartupError` on a bad start."""
    if settings.redis_url and not settings.secret:
        raise StartupError(
            "TRACKER_SECRET is unset (or empty) while REDIS_URL is set: every process sharing a Redis must sign "
            "tokens with one secret, and a development secret is this process's own; set TRACKER_SECRET (for "
            "example to the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    open_files = raise_open_files_limit()
    sock = bind_socket(settings.host, settings.port)
    embedded: EmbeddedRedis | None = None
    try:
        primaries = 1
        if settings.redis_url:
            redis_url = answering_address(settings.redis_url)
            primaries = check_redis(redis_url)
            check_agreement(redis_url, settings.time_scale, settings.secret, cluster=primaries > 1)
        else:
            embedded = EmbeddedRedis(settings.data_dir)
            redis_url = embedded.start()
        clock = start_clock(redis_url, settings, embedded=embedded is not None, cluster=primaries > 1)
        budget = socket_budget(open_files, primaries)
        settings = _with_socket_limit(settings, budget)
        secret = load_or_create_secret(settings.secret, settings.data_dir)
        app = create_app(settings, secret=secret, redis_url=redis_url, clock=clock,
                         redis_pool_size=redis_pool_size(open_files, primaries))
        config = uvicorn.Config(
            app,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=settings.shutdown_grace_s,
            timeout_keep_alive=settings.keepalive_s,
            http=head_timeout_protocol(settings.header_timeout_s,
                                       max_connections=connection_limit(settings.max_sockets, budget),
                                       on_turned_away=functools.partial(app.state.hub.refused, "connections")),
            ws=bounded_websocket_protocol(settings.ws_send_buffer_bytes),
            ws_max_size=WS_MAX_MESSAGE_BYTES,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            **uvicorn_overrides,
        )
        server = _Server(config, app.state.hub)
        # From here a stop signal asks uvicorn for its graceful stop: one before uvicorn takes SIGINT
        # and SIGTERM over has it start and stop at once, and the signals it re-delivers after its
        # stop end here. A closed terminal's SIGHUP stops it the same way (uvicorn leaves it alone).
        previous = {sig: signal.signal(sig, lambda signum, frame: setattr(server, "should_exit", True))
                    for sig in STOP_SIGNALS}
        try:
            lost: list[str] = []
            if embedded is not None:
                def on_lost(reason: str) -> None:
                    lost.append(reason)
                    server.should_exit = True  # uvicorn polls it: a graceful stop, then exit 1

                embedded.watch(on_lost)
            host, port = sock.getsockname()[:2]
            log.info("tracker listening", extra={"url": f"http://{host}:{port}", "redis": redacted_url(redis_url),
                                                 "embedded_redis": embedded is not None, "open_files": open_files,
                                                 "max_sockets": settings.max_sockets,
                                                 "time_scale": settings.time_scale, "kernel": KERNEL})
            if KERNEL != "compiled":
                log.warning("the compiled dispatch kernel is not built: planning runs on its pure-Python twin, about "
                            "8 times slower (install with a C compiler: pip install -e .)")
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not lost:  # (the app and its tasks are done: nothing of this process stamps after this)
            mark_stopped(settings.redis_url or redis_url, clock, cluster=primaries > 1)
        log.info("tracker stopped")
        if lost:
            raise ServerLost(f"stopped because Redis is gone: {lost[0]}")
        if not server.started:
            raise StartupError("the server failed to start; see the log above")
    finally:
        sock.close()
        if embedded is not None:
            embedded.stop()
