"""The rider, merchant and customer clients as a newcomer runs them: ``python -m clients.rider``
or ``python clients/rider.py``, against a real server."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
from websockets.sync.client import connect
import pytest
import redis

from tracker.embedded_redis import free_port
from tracker.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("rider", "merchant", "customer")


def client(name: str, *args: str, as_script: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    how = [str(ROOT / "clients" / f"{name}.py")] if as_script else ["-m", f"clients.{name}"]
    return subprocess.run([sys.executable, *how, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize("as_script", [False, True], ids=["module", "script"])
def test_each_client_has_a_help(name: str, as_script: bool) -> None:
    run = client(name, "--help", as_script=as_script)  # a script in clients/ once shadowed the stdlib's _socket
    assert run.returncode == 0, run.stderr
    assert f"usage: python -m clients.{name}" in run.stdout and "--token" in run.stdout and "--server" in run.stdout


def test_the_client_socket_module_does_not_shadow_the_stdlib() -> None:
    assert not (ROOT / "clients" / "_socket.py").exists()
    assert all(not (ROOT / "clients" / f"{mod}.py").exists() for mod in sys.stdlib_module_names)


def test_clients_fail_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for name, extra in (("rider", []), ("merchant", []), ("customer", ["--order-id", "o1"])):
        run = client(name, "--server", url, "--token", "t", "--for", "5", *extra)
        assert run.returncode == 1 and run.stderr.count("\n") == 1, (name, run.stderr)
        assert f"cannot reach the server at {url}" in run.stderr and "Traceback" not in run.stderr
    run = client("rider", "--server", url)
    assert run.returncode == 2 and "--token" in run.stderr
    for flag, value in (("--heading", "inf"), ("--every", "0"), ("--speed", "nan")):
        run = client("rider", "--server", url, "--token", "t", "--lat", "52.52", "--lng", "13.4", "--move", flag, value)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and flag in run.stderr, (flag, run.stderr)
    for flag in ("--speed", "--heading"):  # without --move the rider stands still: said, not quietly ignored
        run = client("rider", "--server", url, "--token", "t", "--lat", "52.52", "--lng", "13.4", flag, "5")
        assert run.returncode == 2 and f"{flag} works only with --move" in run.stderr, (flag, run.stderr)
    run = client("rider", "--server", url, "--token", "t", "--speed", "5", "--heading", "0")
    assert run.returncode == 2 and "--speed and --heading work only with --move" in run.stderr, run.stderr


def test_a_rider_and_a_kitchen_from_the_command_line_deliver_an_order(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "1"}, redis=own_redis)
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    created = httpx.post(srv.base_url + "/v1/orders", headers={"Authorization": "Bearer " + srv.token("operator", "ops")},
                         json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                               "dropoff": {"lat": 52.53, "lng": 13.42}}, timeout=10)
    assert created.status_code == 201, created.text
    kitchen = subprocess.Popen([sys.executable, "-m", "clients.merchant", "--server", srv.base_url, "--token",
                                srv.token("merchant", merchant), "--confirm", "--ready", "0", "--for", "10"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        run = client("rider", "--server", srv.base_url, "--token", srv.token("rider", rider), "--lat", "52.5201",
                     "--lng", "13.4051", "--move", "--accept", "--deliver", "0.5", "--for", "8", as_script=True)
        out, err = kitchen.communicate(timeout=30)
    finally:
        kitchen.kill()
    assert run.returncode == 0 and kitchen.returncode == 0, run.stderr + err
    frames = [json.loads(line) for line in run.stdout.splitlines()]  # every frame, one JSON line each
    assert frames[0] == {"type": "route", "orders": [], "paused": None}, frames  # it carried nothing when it connected
    assert [f["type"] for f in frames][1:3] == ["offer", "assigned"], frames
    assert "# accepted offer" in run.stderr and f"# sent delivered for {oid}" in run.stderr
    kinds = [f.get("kind") for f in map(json.loads, out.splitlines()) if f.get("type") == "event"]
    assert kinds[:2] == ["placed", "confirmed"] and {"assigned", "food_ready", "delivered"} <= set(kinds), kinds
    watched = client("customer", "--server", srv.base_url, "--token", srv.token("customer", oid), "--order-id", oid,
                     "--for", "2")
    assert watched.returncode == 0, watched.stderr
    assert [json.loads(line)["kind"] for line in watched.stdout.splitlines()][-1] == "delivered"
    named = client("customer", "--server", srv.base_url, "--token", srv.token("customer", oid), "--for", "2")
    assert named.returncode == 0 and named.stdout == watched.stdout, named.stderr  # the token names the order


def test_a_rider_restarted_with_an_order_delivers_it_from_its_route(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    srv = start_server(redis=own_redis)
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
    assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                        "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
    kitchen = httpx_ws_confirm(srv, merchant, oid)
    assert kitchen.returncode == 0, kitchen.stderr
    assert ops.post(f"/v1/orders/{oid}/assign", json={"rider_id": rider}).status_code == 200  # while it was away
    run = client("rider", "--server", srv.base_url, "--token", srv.token("rider", rider), "--deliver", "0.2",
                 "--for", "4")
    assert run.returncode == 0, run.stderr
    route = json.loads(run.stdout.splitlines()[0])
    assert route["type"] == "route" and [(o["order_id"], o["status"]) for o in route["orders"]] == [(oid, "assigned")]
    assert ops.get(f"/v1/orders/{oid}").json()["status"] == "delivered"
    ops.close()


@contextmanager
def an_assigned_order(tmp_path: Path, uid: Callable[[str], str], *,
                      relayed: bool = False) -> Iterator[tuple[Any, ServerProcess, httpx.Client, str, str]]:
    """(its Redis, the server, an operator client, the order, its rider): an order its kitchen
    confirmed and the operator assigned, on a server whose REDIS_URL Redis the test stops,
    starts again (on the same port) or reconfigures by hand. ``relayed``: the server reaches it
    through a :class:`FreezingRelay`, given in its place, which freezes it on cue."""
    from tests.redis_freeze import FreezingRelay
    from tracker.embedded_redis import EmbeddedRedis

    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    external = EmbeddedRedis(tmp_path / "redis", port=free_port())
    external.start()
    relay = FreezingRelay(external) if relayed else None
    try:
        with ServerProcess(redis_url=relay.url if relay else external.url, data_dir=tmp_path / "data") as srv:
            ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
            try:
                assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                                    "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
                assert httpx_ws_confirm(srv, merchant, oid).returncode == 0
                assert ops.post(f"/v1/orders/{oid}/assign", json={"rider_id": rider}).status_code == 200
                yield relay or external, srv, ops, oid, rider
            finally:
                ops.close()
    finally:
        if relay is not None:
            relay.close()
        external.stop()


def delivered_soon(ops: httpx.Client, oid: str, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and ops.get(f"/v1/orders/{oid}").json()["status"] != "delivered":
        time.sleep(0.3)
    return ops.get(f"/v1/orders/{oid}").json()["status"] == "delivered"


def test_a_rider_reports_again_a_step_refused_while_redis_was_away(tmp_path: Path, uid: Callable[[str], str]) -> None:
    """Redis goes away for a few seconds between two steps: the step sent meanwhile is refused
    (``redis_unavailable``), and the rider reports it again instead of carrying on with steps
    the server would refuse, which had left the order at ``at_pickup`` for good."""
    with an_assigned_order(tmp_path, uid) as (external, srv, ops, oid, rider):
        run = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", srv.base_url, "--token",
                                srv.token("rider", rider), "--deliver", "3", "--for", "40"],
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert run.stderr is not None
            for line in run.stderr:  # the first step is reported...
                if f"sent at_pickup for {oid}" in line:
                    break
            deadline = time.monotonic() + 2.5  # ...and taken (the next comes 3 s after it)...
            while ops.get(f"/v1/orders/{oid}").json()["status"] != "at_pickup" and time.monotonic() < deadline:
                time.sleep(0.05)
            external.stop()  # ...then Redis is away while the next one is sent
            time.sleep(4.5)
            external.start()
            assert delivered_soon(ops, oid)
        finally:
            run.kill()
            said = run.communicate()[1]
    assert "redis_unavailable" in said and f"reporting picked_up for {oid} again" in said, said


def test_a_rider_told_a_step_was_not_known_to_be_done_learns_it_was_when_it_reports_it_again(
        tmp_path: Path, uid: Callable[[str], str]) -> None:
    """Redis stops just as the rider's picked_up goes to it (answered ``redis_unavailable``: not
    known to be done) and takes it when it wakes: the rider reports it again, as it does after
    that answer, and says the server had it already, instead of a refusal; the order is delivered."""
    import asyncio

    with an_assigned_order(tmp_path, uid, relayed=True) as (relay, srv, ops, oid, rider):
        relay.freeze_before(b"EVALSHA", f'"order_id":"{oid}","kind":"picked_up"'.encode())
        run = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", srv.base_url, "--token",
                                srv.token("rider", rider), "--deliver", "2", "--for", "60"],
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert run.stderr is not None
            asyncio.run(relay.frozen(timeout=30))
            lines = []
            try:
                for line in run.stderr:  # (the answer comes after the server's 5 s wait)
                    lines.append(line)
                    if f"refused picked_up for {oid}: redis_unavailable" in line:
                        break
            finally:
                relay.thaw()
            for line in run.stderr:  # reported again, as after any redis_unavailable
                lines.append(line)
                if f"picked_up for {oid} was done already" in line:
                    break
            assert delivered_soon(ops, oid)
        finally:
            run.kill()
            said = "".join(lines) + run.communicate()[1]
    assert f"picked_up for {oid} was done already (the order is " in said, said
    assert f"refused picked_up for {oid}: invalid_transition" not in said, said


def test_a_rider_reports_again_a_step_refused_while_redis_was_out_of_memory(tmp_path: Path, uid: Callable[[str], str]) -> None:
    """Redis answers but refuses writes (out of memory) for a few seconds, with no pause between
    steps: the first is refused as ``redis_unavailable`` (it had been a 500-like ``internal``,
    never retried), the ones sent behind it as illegal moves from ``assigned``; the rider starts
    again from the first refused step and the order is delivered."""
    with an_assigned_order(tmp_path, uid) as (external, srv, ops, oid, rider):
        admin = redis.Redis.from_url(external.url)
        admin.config_set("maxmemory", "1")  # reads work (the rider gets its route), writes are refused
        run = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", srv.base_url, "--token",
                                srv.token("rider", rider), "--deliver", "0", "--for", "30"],
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert run.stderr is not None
            for line in run.stderr:
                if f"reporting at_pickup for {oid} again" in line:
                    break
            time.sleep(2)  # (and again, while Redis is still full)
            admin.config_set("maxmemory", "0")
            assert delivered_soon(ops, oid, 20)
        finally:
            run.kill()
            said = run.communicate()[1]
            admin.close()
    assert f"the server refused at_pickup for {oid}: redis_unavailable: Redis is out of memory" in said, said


def httpx_ws_confirm(srv: ServerProcess, merchant: str, oid: str) -> subprocess.CompletedProcess[str]:
    """The kitchen confirms its new order from the command line."""
    return client("merchant", "--server", srv.base_url, "--token", srv.token("merchant", merchant), "--confirm",
                  "--for", "2")


def test_a_refused_token_is_one_line(server: ServerProcess) -> None:
    run = client("rider", "--server", server.base_url, "--token", server.token("merchant", "m1"), "--for", "5")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].endswith("closed the connection: 1008 forbidden: role 'merchant' may not do this (needs rider)")


def three_clients(srv: ServerProcess, server_arg: str, oid: str, merchant: str, rider: str,
                  seconds: float) -> dict[str, subprocess.Popen[str]]:
    """A rider streaming near the restaurant, the order's kitchen and its customer, each a
    command line given ``--server server_arg`` for ``seconds`` (tokens signed by ``srv``);
    returned once all three say they are connected."""
    procs = {
        "rider": ["--token", srv.token("rider", rider), "--lat", "52.5201", "--lng", "13.4051", "--every", "0.5"],
        "merchant": ["--token", srv.token("merchant", merchant)],
        "customer": ["--token", srv.token("customer", oid), "--order-id", oid],
    }
    running = {name: subprocess.Popen([sys.executable, "-m", f"clients.{name}", "--server", server_arg, "--for",
                                       str(seconds), *extra], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE) for name, extra in procs.items()}
    for name, proc in running.items():  # each prints "# connected to ..." (or "# watching ...") first
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line.startswith("# cannot reach"):
            line = proc.stderr.readline()
        assert line.startswith(("# connected to", "# watching order")), (name, line)
    return running


def test_command_line_clients_connect_again_after_the_server_restarts(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    """A deploy restarts the server (its sockets close 1001): the rider, kitchen and customer
    command lines connect again and carry on, as a phone would; the rider streams fixes again."""
    srv = start_server(redis=own_redis)
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
    assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                        "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
    running = three_clients(srv, srv.base_url, oid, merchant, rider, seconds=25)
    try:
        time.sleep(1)  # the rider streaming
        srv.stop()
        srv.start()
        restarted_ms = time.time() * 1000
        time.sleep(6)  # long enough for a reconnect after the first pauses
        ops.close()
        ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
        near = ops.get("/v1/riders/nearby", params={"lat": 52.52, "lng": 13.405, "radius_m": 500}).json()
        seen = [r for r in near["riders"] if r["id"] == rider]
        assert seen and seen[0]["ts"] > restarted_ms, near  # it streams fixes again, after the restart
        assert ops.post(f"/v1/orders/{oid}/cancel", json={}).status_code == 200  # heard by kitchen and customer
        outputs = {name: proc.communicate(timeout=40) for name, proc in running.items()}
    finally:
        ops.close()
        for proc in running.values():
            proc.kill()
    for name, (out, err) in outputs.items():
        assert running[name].returncode == 0, (name, err)
        assert err.count("# connected to") + err.count("# watching order") == 1, (name, err)  # again (the first was read)
        assert "the server went away (1001" in err and "Traceback" not in err, (name, err)
    frames = {name: [json.loads(line) for line in out.splitlines()] for name, (out, _) in outputs.items()}
    assert [f["type"] for f in frames["rider"]].count("route") == 2  # one per connection
    for name in ("merchant", "customer"):  # the second connection resumed: each event once
        kinds = [f["kind"] for f in frames[name] if f.get("type") == "event"]
        assert kinds == ["placed", "cancelled"], (name, kinds)


def test_the_command_line_kitchen_keeps_an_action_it_owes_across_a_server_restart(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    """``--ready 6``: the server restarts while the kitchen waits to mark the order ready; it
    marks it ready once connected again, without replaying its feed."""
    srv = start_server(redis=own_redis)
    oid, merchant = uid("o"), uid("m")
    ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
    kitchen = subprocess.Popen([sys.executable, "-m", "clients.merchant", "--server", srv.base_url, "--token",
                                srv.token("merchant", merchant), "--confirm", "--ready", "6", "--for", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(2)
        assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                            "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        for _ in range(50):
            if ops.get(f"/v1/orders/{oid}").json()["status"] == "confirmed":
                break
            time.sleep(0.1)
        srv.stop()
        srv.start()
        out, err = kitchen.communicate(timeout=40)
        kinds = [e["kind"] for e in ops.get(f"/v1/orders/{oid}").json()["events"]]
    finally:
        ops.close()
        kitchen.kill()
    assert kitchen.returncode == 0 and "the server went away (1001" in err, err
    assert kinds == ["placed", "confirmed", "food_ready"], (kinds, err)
    feed = [json.loads(line)["kind"] for line in out.splitlines() if json.loads(line).get("type") == "event"]
    assert feed == ["placed", "confirmed", "food_ready"], feed  # each event once: the feed resumed


def test_the_command_line_rider_reports_each_step_once_when_told_its_route_again(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    """After the server's pub/sub connection is cut the rider is told its route again (twice per
    cut): ``--deliver`` goes on from there and reports each step once."""
    srv = start_server({"TRACKER_DISPATCH_INTERVAL_S": "0.5"}, redis=own_redis)
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    ops = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer " + srv.token("operator", "ops")})
    courier = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", srv.base_url, "--token",
                                srv.token("rider", rider), "--lat", "52.5201", "--lng", "13.4051", "--every", "0.5",
                                "--accept", "--deliver", "1.5", "--for", "20"],  # (room for a loaded machine)
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(1.5)
        assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                            "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        assert httpx_ws_confirm(srv, merchant, oid).returncode == 0
        for _ in range(100):
            if ops.get(f"/v1/orders/{oid}").json()["status"] == "assigned":
                break
            time.sleep(0.1)
        # Cut it again and again while the rider reports its steps: a route composed before the
        # server read a report on its way must not make the rider send that step again.
        subprocess.run([sys.executable, "-c", "import asyncio, sys; from tracker.redis_client import connect; "
                        "from tests.test_pubsub import kill_pubsub_connections\n"
                        "async def cut(c):\n"
                        "    for _ in range(30):\n"
                        "        await kill_pubsub_connections(c); await asyncio.sleep(0.25)\n"
                        "asyncio.run(cut(connect(sys.argv[1])))", own_redis],
                       check=True, cwd=ROOT, timeout=30)
        out, err = courier.communicate(timeout=40)
        status = ops.get(f"/v1/orders/{oid}").json()["status"]
    finally:
        ops.close()
        courier.kill()
    assert courier.returncode == 0, err
    routes = [f for f in map(json.loads, out.splitlines()) if f["type"] == "route"]
    assert len(routes) >= 2, out  # told again after the cut
    for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
        assert err.count(f"# sent {step} for {oid}") == 1, err
    assert status == "delivered" and '"code":"invalid_transition"' not in out.replace(" ", ""), out


def test_command_line_clients_move_on_to_another_process_of_the_deployment(
        start_server: Callable[..., ServerProcess], own_redis: str, uid: Callable[[str], str]) -> None:
    """``--server A,B``: when A stops, the clients connect to B (without waiting for A to come
    back) and carry on; a first server that cannot be reached is passed over at once."""
    first, second = start_server(redis=own_redis), start_server(redis=own_redis)
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    ops = httpx.Client(base_url=second.base_url, headers={"Authorization": "Bearer " + second.token("operator", "ops")})
    try:
        assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                            "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        running = three_clients(second, f"{first.base_url},{second.base_url}", oid, merchant, rider, seconds=12)
        try:
            time.sleep(1)  # the rider streaming to the first server
            first.stop()  # 1001; it stays down
            time.sleep(3)  # the first pause is 0.5 s
            assert ops.post(f"/v1/orders/{oid}/cancel", json={}).status_code == 200  # heard by kitchen and customer
            outputs = {name: proc.communicate(timeout=40) for name, proc in running.items()}
        finally:
            for proc in running.values():
                proc.kill()
        second_ws = second.base_url.replace("http://", "ws://")
        for name, (out, err) in outputs.items():
            assert running[name].returncode == 0, (name, err)
            assert f"connecting again to {second_ws} in" in err and "Traceback" not in err, (name, err)
            if name != "rider":
                kinds = [json.loads(line)["kind"] for line in out.splitlines() if json.loads(line).get("type") == "event"]
                assert kinds == ["placed", "cancelled"], (name, kinds)  # resumed on the other process: each once
        dead = f"http://127.0.0.1:{free_port()}"
        run = client("rider", "--server", f"{dead},{second.base_url}", "--token", second.token("rider", rider),
                     "--for", "2")
        assert run.returncode == 0, run.stderr
        assert f"trying {second_ws}" in run.stderr and f"# connected to {second_ws}/v1/ws/rider" in run.stderr, run.stderr
    finally:
        ops.close()


def test_a_rider_turned_away_by_a_full_server_keeps_trying_and_gets_in(
        start_server: Callable[..., ServerProcess], uid: Callable[[str], str]) -> None:
    srv = start_server({"TRACKER_MAX_SOCKETS": "1"})
    with connect(srv.ws_url + "/v1/ws/rider",
                 additional_headers={"Authorization": "Bearer " + srv.token("rider", uid("holder"))}) as holder:
        assert json.loads(holder.recv(10))["type"] == "route"  # the one slot is taken
        rider = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", srv.base_url, "--token",
                                  srv.token("rider", uid("r")), "--lat", "52.52", "--lng", "13.405", "--for", "8"],
                                 cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2.5)  # turned away, and trying again; then the holder leaves: a slot frees up
    try:
        out, err = rider.communicate(timeout=40)
    finally:
        rider.kill()
    assert rider.returncode == 0, err
    assert "the server is full or restarting (1013 over_capacity" in err, err
    assert any(json.loads(line)["type"] == "route" for line in out.splitlines()), out  # in, at last


def test_a_rider_stopped_with_sigterm_closes_its_socket_and_leaves_at_once(server: ServerProcess,
                                                                          uid: Callable[[str], str]) -> None:
    """A service manager stops the client with SIGTERM: the socket closes with a close frame, so
    the rider leaves nearby search and dispatch now, not when its last fix goes stale (30 s)."""
    rider, lat, lng = uid("r"), 45.4900, 9.2200
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})

    def listed() -> bool:
        found = ops.get("/v1/riders/nearby", params={"lat": lat, "lng": lng, "radius_m": 500}).json()["riders"]
        return any(r["id"] == rider for r in found)

    proc = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", server.base_url, "--token",
                             server.token("rider", rider), "--lat", str(lat), "--lng", str(lng)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not listed():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        proc.terminate()
        assert proc.wait(timeout=10) == 143
        deadline = time.monotonic() + 3
        while listed():
            assert time.monotonic() < deadline, "the rider is still listed after SIGTERM"
            time.sleep(0.2)
    finally:
        proc.kill()
        ops.close()


def test_a_rider_off_duty_once_takes_offers_again_when_started_without_unavailable(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    rider, lat, lng = uid("r"), 45.4950, 9.2250
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})

    def available_when_listed(*flags: str) -> bool:
        proc = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", server.base_url, "--token",
                                 server.token("rider", rider), "--lat", str(lat), "--lng", str(lng), *flags],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            deadline = time.monotonic() + 20
            while True:
                found = ops.get("/v1/riders/nearby", params={"lat": lat, "lng": lng, "radius_m": 500}).json()["riders"]
                mine = [r for r in found if r["id"] == rider]
                if mine and mine[0]["available"] is (not flags):  # (what the client said, once it is listed)
                    return mine[0]["available"]
                assert time.monotonic() < deadline and proc.poll() is None, (mine, flags)
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    try:
        assert available_when_listed("--unavailable") is False
        assert available_when_listed() is True  # not left off duty by the run before
    finally:
        ops.close()


@contextmanager
def a_rider_delivering(server: ServerProcess, uid: Callable[[str], str], run_for_s: float,
                       reaches: str) -> Iterator[tuple[httpx.Client, subprocess.Popen[str], str]]:
    """(an operator client, a command-line rider running ``--deliver 1.5`` for ``run_for_s``, its
    order): the order its kitchen confirmed and the operator assigned, once it reached ``reaches``."""
    oid, merchant, rider = uid("o"), uid("m"), uid("r")
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    courier = subprocess.Popen([sys.executable, "-m", "clients.rider", "--server", server.base_url, "--token",
                                server.token("rider", rider), "--deliver", "1.5", "--for", str(run_for_s)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                            "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        assert httpx_ws_confirm(server, merchant, oid).returncode == 0
        time.sleep(1)  # the rider is connected
        assert ops.post(f"/v1/orders/{oid}/assign", json={"rider_id": rider}).status_code == 200
        for _ in range(100):
            if ops.get(f"/v1/orders/{oid}").json()["status"] == reaches:
                break
            time.sleep(0.1)
        yield ops, courier, oid
    finally:
        ops.close()
        courier.kill()


def test_the_command_line_rider_stops_reporting_an_order_whose_delivery_failed(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    """The operator ends an order on the road as failed: the command-line rider says so and
    reports none of its later steps (each would be refused)."""
    reason = "rider unreachable since pickup"
    with a_rider_delivering(server, uid, 10, "picked_up") as (ops, courier, oid):
        failed = ops.post(f"/v1/orders/{oid}/fail", json={"reason": reason})
        assert failed.status_code == 200, failed.text
        out, err = courier.communicate(timeout=30)
        kinds = [e["kind"] for e in ops.get(f"/v1/orders/{oid}").json()["events"]]
    assert courier.returncode == 0, err
    assert f"# order {oid} failed by the operator: {reason}; no longer reporting it" in err, err
    assert "refused" not in err and '"code":"invalid_transition"' not in out.replace(" ", ""), (out, err)
    assert kinds[-1] == "failed" and "delivered" not in kinds, kinds


def test_the_command_line_rider_drops_an_order_taken_back_and_delivers_it_when_handed_back(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    """The operator takes the order back after the rider reached the restaurant, then gives it
    to the same rider again: the rider reports nothing while it is not its order, then
    delivers it from the start, and the server refuses none of its reports."""
    with a_rider_delivering(server, uid, 16, "at_pickup") as (ops, courier, oid):
        rider = ops.get(f"/v1/orders/{oid}").json()["rider_id"]
        taken = ops.post(f"/v1/orders/{oid}/unassign", json={"rider_id": rider, "reason": "kitchen asked for another"})
        assert taken.status_code == 200, taken.text
        time.sleep(4)  # long enough for two more steps, had the rider gone on
        assert ops.get(f"/v1/orders/{oid}").json()["status"] == "confirmed"
        assert ops.post(f"/v1/orders/{oid}/assign", json={"rider_id": rider}).status_code == 200
        out, err = courier.communicate(timeout=40)
        kinds = [e["kind"] for e in ops.get(f"/v1/orders/{oid}").json()["events"]]
    assert courier.returncode == 0, err
    assert f"# order {oid} taken back by the operator: kitchen asked for another; no longer reporting it" in err, err
    assert "refused" not in err, err
    assert kinds == ["placed", "confirmed", "assigned", "at_pickup", "rider_unassigned", "assigned", "at_pickup",
                     "picked_up", "at_dropoff", "delivered"], (kinds, err)


def test_the_command_line_kitchen_confirms_a_backlog_past_its_rate_limit_and_a_delayed_order(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    """A kitchen opens with 120 orders waiting, more than its socket may send at once (however
    slowly a loaded machine reads its feed): the confirmations refused as ``rate_limited`` are
    sent again until every order is confirmed, one the kitchen had delayed before confirming it
    included."""
    merchant = uid("m")
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    waiting = [uid(f"o{i}") for i in range(120)]
    try:
        for oid in waiting:
            assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                                "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        with connect(server.ws_url + "/v1/ws/merchant", additional_headers={
                "Authorization": "Bearer " + server.token("merchant", merchant)}) as board:
            board.send(json.dumps({"type": "delay", "order_id": waiting[0], "minutes": 5}))
            while json.loads(board.recv(timeout=10)).get("kind") != "food_delayed":
                pass
        kitchen = client("merchant", "--server", server.base_url, "--token", server.token("merchant", merchant),
                         "--confirm", "--for", "20")
        statuses = [ops.get(f"/v1/orders/{oid}").json()["status"] for oid in waiting]
    finally:
        for oid in waiting:  # confirmed orders left open on the shared server would be offered to other tests' riders
            ops.post(f"/v1/orders/{oid}/cancel", json={"reason": "test over"})
        ops.close()
    assert kitchen.returncode == 0, kitchen.stderr
    assert "rate_limited" in kitchen.stderr and "sending confirm for" in kitchen.stderr, kitchen.stderr  # it did hit the limit
    assert statuses == ["confirmed"] * len(waiting), kitchen.stderr


def test_the_command_line_customer_prints_the_order_when_its_channel_skipped_events(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    """Resuming after more than 1,000 missed events, the channel skips ahead (``resync``
    ``too_many_missed``): the client prints the order as it stands, read over HTTP."""
    oid, merchant = uid("o"), uid("m")
    first = _order_with_skipped_events(server, oid, merchant)
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    try:
        watched = client("customer", "--server", server.base_url, "--token", server.token("customer", oid),
                         "--last-event-id", first, "--for", "3")
        delayed_until = ops.get(f"/v1/orders/{oid}").json()["ready_at"]
    finally:
        ops.close()
    assert watched.returncode == 0, watched.stderr
    frames = [json.loads(line) for line in watched.stdout.splitlines()]
    assert {"type": "resync", "reason": "too_many_missed"} in frames, frames[:3]
    order = [f["order"] for f in frames if f["type"] == "order"]
    assert len(order) == 1 and order[0]["id"] == oid and order[0]["ready_at"] == delayed_until, order
    assert "the order as it stands now follows" in watched.stderr


@contextmanager
def skipping_twice() -> Iterator[tuple[str, list[str]]]:
    """A stand-in server whose customer socket says ``too_many_missed`` twice in a row (a resume
    from over 2,002 events back), then an event, and holds; it answers ``GET /v1/orders/...``.
    Yields its http:// URL and the paths of the order reads it was sent."""
    import threading
    from http import HTTPStatus

    from websockets.sync.server import serve

    reads: list[str] = []

    def answer_reads(connection: Any, request: Any) -> Any:
        if not request.path.startswith("/v1/orders/"):
            return None  # (the socket)
        reads.append(request.path)
        return connection.respond(HTTPStatus.OK, json.dumps({"id": "o1", "status": "confirmed"}))

    def handler(ws: Any) -> None:
        skip = {"type": "resync", "reason": "too_many_missed"}
        for frame in (skip, skip, {"type": "event", "id": "9-0", "order_id": "o1", "kind": "food_delayed"}):
            ws.send(json.dumps(frame))
        for _ in ws:  # until the client goes
            pass

    with serve(handler, "127.0.0.1", 0, process_request=answer_reads) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.socket.getsockname()[1]}", reads
        finally:
            srv.shutdown()
            thread.join(5)


def test_the_customer_reads_the_order_once_after_several_skips_in_a_row() -> None:
    """Two ``too_many_missed`` in a row had the client read the order over HTTP twice; one read,
    after the last, is the order as it stands."""
    with skipping_twice() as (url, reads):
        watched = client("customer", "--server", url, "--token", "t", "--order-id", "o1", "--for", "3")
    assert watched.returncode == 0, watched.stderr
    assert reads == ["/v1/orders/o1"], (reads, watched.stderr)
    frames = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [f["type"] for f in frames] == ["resync", "resync", "event", "order"], frames
    assert watched.stderr.count("the order as it stands now follows") == 1, watched.stderr


def test_a_client_piped_into_head_stops_quietly(server: ServerProcess, uid: Callable[[str], str]) -> None:
    """`... | head -1`: the reader closing stdout is the end of the job, not a server that cannot be reached."""
    oid = uid("piped")
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    assert ops.post("/v1/orders", json={"id": oid, "merchant_id": uid("m"), "pickup": {"lat": 52.52, "lng": 13.405},
                                        "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
    proc = subprocess.Popen([sys.executable, "-m", "clients.customer", "--server", server.base_url, "--for", "20",
                             "--token", server.token("customer", oid), "--order-id", oid],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert '"placed"' in first, first
    proc.stdout.close()  # what head does after its line
    ops.post(f"/v1/orders/{oid}/cancel", json={})  # more to print, into the closed pipe
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert "cannot reach the server" not in err and "Traceback" not in err, err


@contextmanager
def sending_once(frame: str) -> Iterator[str]:
    """A WebSocket server (not the tracker: the tracker never sends such frames) that sends
    ``frame`` to whoever connects and then holds the socket; yields its http:// URL."""
    import threading

    from websockets.sync.server import serve

    def handler(ws: Any) -> None:
        ws.send(frame)
        for _ in ws:  # until the client goes
            pass

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.socket.getsockname()[1]}"
        finally:
            srv.shutdown()
            thread.join(5)


@pytest.mark.parametrize(("name", "extra", "frame", "said"), [
    ("rider", [], "hello, not json", "the server sent a frame that is not a JSON object: 'hello, not json'; ignored"),
    ("merchant", [], "[1, 2]", "the server sent a frame that is not a JSON object: '[1, 2]'; ignored"),
    ("customer", ["--order-id", "o1"], '"text"', "not a JSON object"),
    ("rider", ["--accept"], '{"type": "offer", "orders": []}', "an offer without an offer_id"),
    ("rider", ["--deliver", "1"], '{"type": "assigned", "orders": [{"id": "x"}]}', "1 order(s) without an order_id"),
    ("merchant", ["--confirm"], '{"type": "event", "id": "1-0", "order_id": ["x"], "kind": "placed"}', None),
], ids=["rider-not-json", "merchant-array", "customer-string", "offer-without-id", "assigned-without-order-id",
        "event-with-a-list-for-its-order"])
def test_a_frame_the_client_cannot_read_is_said_in_one_line_and_the_client_goes_on(
        name: str, extra: list[str], frame: str, said: str | None) -> None:
    with sending_once(frame) as url:
        run = client(name, "--server", url, "--token", "t", "--for", "2", *extra)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    if said is not None:
        assert [line for line in run.stderr.splitlines() if said in line] != [], run.stderr


def _order_with_skipped_events(server: ServerProcess, oid: str, merchant: str) -> str:
    """An order with over 1,000 events: a customer resuming after its first is told
    ``too_many_missed``. Returns that first event's id."""
    ops = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + server.token("operator", "ops")})
    try:
        assert ops.post("/v1/orders", json={"id": oid, "merchant_id": merchant, "pickup": {"lat": 52.52, "lng": 13.405},
                                            "dropoff": {"lat": 52.53, "lng": 13.42}}).status_code == 201
        first = ops.get(f"/v1/orders/{oid}").json()["events"][0]["id"]
    finally:
        ops.close()
    with connect(f"{server.ws_url}/v1/ws/merchant?merchant_id={merchant}", max_queue=None, additional_headers={
            "Authorization": "Bearer " + server.token("operator", "ops")}) as platform:
        for _ in range(1100):
            platform.send(json.dumps({"type": "delay", "order_id": oid, "minutes": 1}))
        delays = 0
        while delays < 1100:
            frame = json.loads(platform.recv(timeout=30))
            assert frame.get("type") != "error", frame
            delays += frame.get("kind") == "food_delayed"
    return first


@contextmanager
def second_connection_held(port: int) -> Iterator[tuple[str, Any, Any]]:
    """A TCP relay to the server on ``port``: the first connection (the client's socket) passes;
    the second (its HTTP read of the order) waits until ``release`` is set, or is dropped unread
    when ``drop`` is; later ones pass. Yields (url, arrived, release) events; ``drop`` as an
    attribute of ``release``."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    arrived, release = threading.Event(), threading.Event()
    release.drop = False  # type: ignore[attr-defined]
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            n += 1
            if n == 2:
                arrived.set()
                if release.drop:  # type: ignore[attr-defined]
                    conn.close()
                    continue
                release.wait(30)
            upstream = socket.create_connection(("127.0.0.1", port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", arrived, release
    finally:
        stop.set()
        release.set()
        listener.close()


def test_the_customer_reads_the_order_again_when_the_first_read_after_skipped_events_fails(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    oid = uid("o")
    first = _order_with_skipped_events(server, oid, uid("m"))
    with second_connection_held(server.port) as (url, _, release):
        release.drop = True  # the read's connection is dropped: the network, a restart
        watched = client("customer", "--server", url, "--token", server.token("customer", oid),
                         "--last-event-id", first, "--for", "4")
    assert watched.returncode == 0 and "Traceback" not in watched.stderr, watched.stderr
    assert "could not read the order over HTTP (" in watched.stderr and "trying again in 1 s" in watched.stderr
    orders = [f for f in map(json.loads, watched.stdout.splitlines()) if f["type"] == "order"]
    assert len(orders) == 1 and orders[0]["order"]["id"] == oid, watched.stdout[-300:]


def test_the_customer_ends_in_one_line_when_the_order_cannot_be_read_after_skipped_events(
        server: ServerProcess, uid: Callable[[str], str]) -> None:
    oid = uid("o")
    first = _order_with_skipped_events(server, oid, uid("m"))
    token = server.token("customer", oid)
    with second_connection_held(server.port) as (url, arrived, release):
        proc = subprocess.Popen([sys.executable, "-m", "clients.customer", "--server", url, "--token", token,
                                 "--last-event-id", first, "--for", "20"],
                                cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert arrived.wait(20)  # its HTTP read is on its way...
            revoked = httpx.post(server.base_url + "/v1/tokens/revoke", json={"role": "customer", "sub": oid},
                                 headers={"Authorization": "Bearer " + server.token("operator", "ops")})
            assert revoked.status_code == 200, revoked.text
            release.set()  # ...and reaches the server after the link was revoked
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err, err
    said = [line for line in err.splitlines() if not line.startswith("#")]
    assert len(said) == 1 and "token revoked" in said[0], err


@contextmanager
def closing_first(code: int, reason: str) -> Iterator[tuple[str, list[float], list[float]]]:
    """A WebSocket server (standing in for a tracker) that closes the first connection with
    ``code`` and ``reason`` once it got a fix on it, and holds later ones; yields its http:// URL,
    when each connection came and when it closed the first (monotonic)."""
    import threading

    from websockets.sync.server import serve

    came: list[float] = []
    closed: list[float] = []

    def handler(ws: Any) -> None:
        came.append(time.monotonic())
        if len(came) == 1:
            while json.loads(ws.recv(10)).get("type") != "location":
                pass
            ws.close(code, reason)
            closed.append(time.monotonic())
            return
        for _ in ws:  # until the client goes
            pass

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.socket.getsockname()[1]}", came, closed
        finally:
            srv.shutdown()
            thread.join(5)


@pytest.mark.parametrize(("reason", "least", "most"), [
    ("rate_limited: too many location fixes, connection closed; reconnect in 1 s and send at most 5 a second", 1.0, 2.5),
    ("rate_limited: too many location fixes, connection closed", 2.5, None),  # (a server that says no pause)
    ("forbidden: not this rider's", None, None),
], ids=["pause-asked", "pause-not-said", "other-policy-close"])
def test_a_rider_cut_off_for_sending_too_fast_connects_again_after_a_pause(
        reason: str, least: float | None, most: float | None) -> None:
    """A 1008 ``rate_limited`` close (a stalled link may have delivered a rider's fixes at once)
    does not end the command-line rider: it connects again, after the pause the reason asks
    for, else 10 s (here cut short by ``--for``); another policy close still ends it."""
    with closing_first(1008, reason) as (url, came, closed):
        run = client("rider", "--server", url, "--token", "t", "--lat", "52.52", "--lng", "13.405", "--every", "0.2",
                     "--for", "4")
    if least is None:
        assert run.returncode == 1 and f"the server closed the connection: 1008 {reason}" in run.stderr, run.stderr
        assert len(came) == 1
        return
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert f"cut this client off for sending too fast (1008 {reason}); connecting again in" in run.stderr, run.stderr
    assert len(came) >= 2 and closed, (came, closed, run.stderr)
    assert came[1] - closed[0] >= least and (most is None or came[1] - closed[0] <= most), (came, closed, run.stderr)
