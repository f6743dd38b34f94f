"""Scale-out on Redis Cluster: two server processes on a real three-node cluster serve one order
from the rider's first fix to its delivery, with every feature's keys spread over the nodes;
a node going down is a 503, not a crash, and the server recovers when it is back.

(``pytest --redis-cluster`` runs the whole suite on a cluster; this module keeps the
essentials in the default run.)
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Iterator

import httpx
import psutil
import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from clients.customer import CustomerClient
from tracker import agreement
from tests.orders_helpers import PICKUP, Ops, confirmed_order, events_until, merchant
from tests.test_dispatch_live import FAST, rider_near_restaurant
from tests.test_locations import nearby
from tracker.embedded_cluster import EmbeddedCluster
from tracker.geo import dispatch_region
from tracker.locations import CARRYING_RIDERS, rider_orders_key
from tracker.locations.store import pause_key
from tracker.orders import open_orders_key
from tracker.orders.counts import BY_STATUS_KEY
from tracker.orders.followups import FOLLOWUPS_KEY
from tracker.orders.store import order_key
from tracker.redis_client import REDIS_DOWN, redis_unavailable
from tracker.embedded_redis import free_port, port_is_free
from tracker.launcher import ServerProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def keys_per_node(cluster: EmbeddedCluster) -> list[int]:
    counts = []
    for url in cluster.urls:
        client = redis.Redis.from_url(url)
        try:
            counts.append(client.dbsize())
        finally:
            client.close()
    return counts


async def readyz_becomes(http: httpx.AsyncClient, status: int, failure: str, tries: int = 100) -> None:
    for _ in range(tries):
        if (await http.get("/readyz")).status_code == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(failure)


async def test_two_servers_on_a_cluster_serve_an_order_end_to_end(cluster, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    near: ServerProcess = start_server(FAST, redis=cluster.urls[0])
    far: ServerProcess = start_server(FAST, redis=cluster.urls[2])  # any node's address will do
    mid, oid, rid = uid("m"), uid("o"), uid("r")
    ops = Ops(far)
    courier = await rider_near_restaurant(near, rid, 0.001)
    kitchen = await merchant(near, mid)
    try:
        for _ in range(50):  # the fix streamed to one process is found through the other
            if any(r["id"] == rid for r in await nearby(far, PICKUP["lat"], PICKUP["lng"], 1000)):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the rider's fix never reached the other server")

        assert (await ops.create(oid, mid)).status_code == 201  # ready when placed: offered at once
        watcher = await CustomerClient(far.ws_url, far.token("customer", oid), oid).connect()
        await kitchen.confirm(oid)
        offer = await courier.expect("offer", timeout=10)
        assert [o["order_id"] for o in offer["orders"]] == [oid]
        await courier.accept(offer["offer_id"])
        await courier.expect("assigned")
        assert [e["kind"] for e in await events_until(watcher, "assigned")] == ["placed", "confirmed", "assigned"]
        seen = await watcher.next(timeout=30)  # (sent at once; a loaded 2-core machine may take seconds)
        assert seen["type"] == "rider_location" and seen["rider_id"] == rid and isinstance(seen["eta"], int), seen
        prompt = await kitchen.expect("prompt")  # the rider is 110 m away: the kitchen hears at once
        assert prompt["order_id"] == oid and prompt["kind"] in ("start_preparing", "rider_arriving"), prompt

        after_assigned = watcher.last_event_id
        for step in ("at_pickup", "picked_up", "at_dropoff", "delivered"):
            await courier.progress(oid, step)
        await events_until(watcher, "delivered")
        await watcher.close()
        # A customer who saw up to `assigned` resumes on the other server: the rest, once each.
        late = CustomerClient(near.ws_url, near.token("customer", oid), oid)
        late.last_event_id = after_assigned
        await late.connect()
        assert [e["kind"] for e in await events_until(late, "delivered")] == ["at_pickup", "picked_up",
                                                                               "at_dropoff", "delivered"]
        await late.close()
        assert (await ops.get(oid))["status"] == "delivered"
        assert sum(1 for n in keys_per_node(cluster) if n > 0) >= 2  # the data really is sharded
    finally:
        await courier.close()
        await kitchen.close()
        await ops.close()


async def test_a_server_starts_from_the_first_named_cluster_node_that_answers(cluster, start_server, uid) -> None:  # type: ignore[no-untyped-def]
    """REDIS_URL may name several nodes: a server restarted while the first is down (failed over
    to its replica, say) starts from the next instead of refusing to start."""
    dead = f"redis://127.0.0.1:{free_port()}"
    srv: ServerProcess = start_server(FAST, redis=f"{dead},{cluster.urls[1]}")
    ops = Ops(srv)
    try:
        oid = uid("o")
        assert (await ops.create(oid, uid("m"))).status_code == 201
        assert (await ops.get(oid))["status"] == "placed"
        assert f"redis={cluster.urls[1]} " in srv.log_tail(200)  # it started from the second address
    finally:
        await ops.close()


def test_the_cluster_command_prints_every_node_on_the_ports_asked_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    while not all(port_is_free(p) for p in (port, port + 1, port + 10000, port + 10001)):
        port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "2",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line == f"REDIS_URL=redis://127.0.0.1:{port},redis://127.0.0.1:{port + 1}", line
        client = redis.RedisCluster.from_url(line.split("=", 1)[1].split(",")[1])
        try:
            assert client.set("k", "v") and client.get("k") == b"v"
        finally:
            client.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_the_cluster_command_refuses_ports_whose_bus_port_does_not_exist_and_no_nodes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "2",
                           "--port", "60000"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "port 60000 (or its cluster bus port 70000) is in use or out of range" in done.stderr + done.stdout
    none = subprocess.run([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "0"],
                          capture_output=True, text=True, timeout=30)
    assert none.returncode == 2 and "--masters must be at least 1, not 0" in none.stderr and "Traceback" not in none.stderr


def test_a_second_cluster_command_on_a_running_clusters_folder_is_refused_and_harms_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The second run wiped the first's node folders (lock files included) before finding them taken."""
    first = subprocess.Popen([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "1"],
                             stdout=subprocess.PIPE, text=True)
    try:
        url = first.stdout.readline().strip().split("=", 1)[1]  # type: ignore[union-attr]
        client = redis.RedisCluster.from_url(url)
        try:
            assert client.set("k", "v")
            second = subprocess.run([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "1"],
                                    capture_output=True, text=True, timeout=30)
            assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
            assert second.stderr.strip() == f"error: {tmp_path} holds a running cluster (pid {first.pid}): stop it, " \
                                            "or choose another folder", second.stderr
            assert client.get("k") == b"v"
            assert {"nodes.conf", "tracker.lock"} <= {p.name for p in (tmp_path / "node0").iterdir()}  # not wiped
        finally:
            client.close()
    finally:
        first.terminate()
        assert first.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_cluster_command_stopped_while_it_starts_stops_its_nodes_without_a_traceback(tmp_path, sig) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "tracker.embedded_cluster", str(tmp_path), "--masters", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (as from a terminal)
    try:
        deadline = time.monotonic() + 30
        while not (nodes := psutil.Process(proc.pid).children()):  # the first node is starting
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig and "Traceback" not in err and not out, err
    assert err.strip() == "interrupted while starting the cluster; the nodes started are stopped", err
    assert psutil.wait_procs(nodes, timeout=10)[1] == []


async def test_a_cluster_node_down_is_a_503_not_a_crash_and_the_server_recovers(start_server, uid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        srv: ServerProcess = start_server(FAST, redis=cluster.url)
        ops = Ops(srv)
        mid, rid = uid("m"), uid("r")
        oids = [uid(f"o{i}") for i in range(8)]  # eight ids, on every node's slots
        courier = await rider_near_restaurant(srv, rid, 0.001)
        try:
            for oid in oids:
                assert (await ops.create(oid, mid)).status_code == 201
            node = cluster.node_for(f"order:{{m:{mid}}}:x")  # the one holding the orders
            os.kill(node.pid, signal.SIGKILL)  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
                await readyz_becomes(http, 503, "/readyz stayed ready with a cluster node down")
                alive = cluster.urls[(cluster.nodes.index(node) + 1) % len(cluster.nodes)]
                late = ServerProcess(redis_url=alive, data_dir=tmp_path / "late")
                with pytest.raises(RuntimeError) as refused:  # a new server will not start on it
                    late.start()
                late.cleanup()
                assert "cannot serve every slot" in str(refused.value) and "Traceback" not in str(refused.value)
                answers = []
                for i in range(60):  # the rider streams on until the cluster itself says it is down
                    await courier.location(PICKUP["lat"] + 0.001 + i * 1e-5, PICKUP["lng"])
                    resp = await ops.client.get(f"/v1/orders/{oids[i % len(oids)]}")
                    answers.append((resp.status_code, resp.json().get("error", {}).get("code")))
                    if "ClusterDownError" in srv.log_path.read_text():
                        break
                    await asyncio.sleep(0.3)
                assert set(answers) == {(503, "redis_unavailable")}, answers
                assert "ClusterDownError" in srv.log_path.read_text()  # CLUSTERDOWN too is a 503
                node.stop()
                node.start()  # same port and folder: it rejoins with its slots
                await readyz_becomes(http, 200, "/readyz did not recover after the node came back", tries=300)
            for _ in range(100):  # its slots served again: every order reads back
                codes = [(await ops.client.get(f"/v1/orders/{oid}")).status_code for oid in oids]
                if codes == [200] * len(oids):
                    break
                await asyncio.sleep(0.1)
            assert codes == [200] * len(oids)
            assert "Traceback" not in srv.log_path.read_text()  # an outage is one line per kind, not a flood
        finally:
            await courier.close()
            await ops.close()


def _ids_off(cluster: EmbeddedCluster, node: object, prefix: str, key: str, count: int = 1) -> list[str]:
    """``count`` ids (``prefix``-n) whose ``key`` (formatted with the id) is not on ``node``."""
    out, n = [], 0
    while len(out) < count:
        candidate = f"{prefix}-{n}"
        n += 1
        if cluster.node_for(key.format(candidate)) is not node:
            out.append(candidate)
    return out


async def test_order_steps_while_the_journals_node_is_down_are_refused_or_counted(start_server, uid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The node holding ``{orders}`` (the steps' repair journal and the fleet's counts) dies while
    the order's own node answers: a step taken then without its journal lost its count (and any
    follow-up failing with it) for good. Either the step is refused (503, nothing applied) and
    taken when sent again, or it stands and is counted once the node is back."""
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        srv: ServerProcess = start_server({**FAST, "TRACKER_FOLLOWUP_REPAIR_S": "1"}, redis=cluster.url)
        ops = Ops(srv)
        journal_node = cluster.node_for(FOLLOWUPS_KEY)
        assert cluster.node_for(BY_STATUS_KEY) is journal_node
        mid = _ids_off(cluster, journal_node, uid("m"), "order:{{m:{}}}:x")[0]
        cancelled, assigned = _ids_off(cluster, journal_node, uid("o"), "orderidx:{{{}}}", 2)
        rid = _ids_off(cluster, journal_node, uid("r"), "rider:{{{}}}")[0]
        counts = redis.RedisCluster.from_url(cluster.url, decode_responses=True)
        try:
            assert (await ops.create(cancelled, mid)).status_code == 201
            await confirmed_order(srv, ops, assigned, mid)
            for _ in range(100):  # both counted (the confirm's count follows its answer)
                before = {k: int(v) for k, v in counts.hgetall(BY_STATUS_KEY).items()}
                if before.get("placed") == 1 and before.get("confirmed") == 1:
                    break
                await asyncio.sleep(0.1)
            assert before == {"placed": 1, "confirmed": 1}, before
            await asyncio.sleep(1.5)  # on the node's disk (appendfsync everysec)
            os.kill(journal_node.pid, signal.SIGKILL)  # type: ignore[arg-type]
            # Within the cluster's node timeout (5 s): the order's own node still answers.
            first = [await ops.cancel(cancelled), await ops.assign(assigned, rid)]
            for resp in first:
                assert resp.status_code in (200, 503), resp.text
                if resp.status_code == 503:
                    assert resp.json()["error"]["code"] == "redis_unavailable", resp.text
            journal_node.stop()
            journal_node.start()  # same port and folder: it rejoins with its slots and data
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
                await readyz_becomes(http, 200, "/readyz did not recover after the node came back", tries=300)
            for resp, again in zip(first, (lambda: ops.cancel(cancelled), lambda: ops.assign(assigned, rid))):
                if resp.status_code == 503:  # refused: nothing was applied, so the same step again works
                    for _ in range(50):
                        resp = await again()
                        if resp.status_code != 503:
                            break
                        await asyncio.sleep(0.2)
                    assert resp.status_code == 200, resp.text
            assert (await ops.get(cancelled))["status"] == "cancelled"
            assert (await ops.get(assigned))["status"] == "assigned"
            expected = {"cancelled": 1, "assigned": 1}
            for _ in range(100):  # the repair runs every half second
                after = {k: int(v) for k, v in counts.hgetall(BY_STATUS_KEY).items() if int(v)}
                if after == expected:
                    break
                await asyncio.sleep(0.1)
            assert after == expected, (first, after)  # (the step taken unjournaled stayed uncounted for good)
            assert counts.sismember(rider_orders_key(rid), assigned) and counts.sismember(CARRYING_RIDERS, rid)
            region = open_orders_key(dispatch_region(PICKUP["lat"], PICKUP["lng"]))
            assert counts.zscore(region, assigned) is None and counts.zscore(region, cancelled) is None
            for oid in (cancelled, assigned):
                assert counts.hget(order_key(mid, oid), "count_pending") is None
        finally:
            counts.close()
            await ops.close()


async def test_a_rider_paused_while_its_slot_is_migrating_is_a_503_at_worst_not_a_500(start_server, uid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A slot being moved between nodes (``redis-cli --cluster reshard``): its keys not yet moved
    are answered ``ASK`` (go to the node it moves to, saying ``ASKING`` first). A ``MULTI`` cannot
    follow that (redis-py gives up with ``MovedError``): the pause, written in one, answered 500
    ``internal`` with a traceback. It is a script now, which follows the redirection as any command
    does; redis-py's asyncio cluster client may send its ``ASKING`` on another pooled connection than
    the command, which the new node then redirects back (``ClusterError``: TTL exhausted), so while
    the slot moves the answer is 200 or 503 ``redis_unavailable``, never a 500."""
    with EmbeddedCluster(tmp_path / "cluster", masters=2) as cluster:
        srv: ServerProcess = start_server(FAST, redis=cluster.url)
        ops = Ops(srv)
        rid = uid("r")
        slot = key_slot(rid.encode())
        source = cluster.node_for(f"rider:{{{rid}}}")
        target = next(node for node in cluster.nodes if node is not source)
        src, dst = (redis.Redis(host="127.0.0.1", port=n.port, decode_responses=True) for n in (source, target))
        try:
            src.set(f"rider:{{{rid}}}:other", "1")  # (the slot holds keys on its source)
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.cluster("myid"))
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.cluster("myid"))
            answers = [await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": "slot moving"}),
                       await ops.client.post(f"/v1/riders/{rid}/resume")]
            for resp in answers:
                assert resp.status_code == 200 or (resp.status_code, resp.json()["error"]["code"]) == \
                    (503, "redis_unavailable"), resp.text
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):  # the move is finished
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for client in (src, dst):
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst.cluster("myid"))
            for _ in range(50):  # then the same requests go through (after a MOVED or two)
                paused = await ops.client.post(f"/v1/riders/{rid}/pause", json={"reason": "slot moved"})
                if paused.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            assert paused.status_code == 200 and paused.json()["paused"]["reason"] == "slot moved", paused.text
            assert (await ops.client.post(f"/v1/riders/{rid}/resume")).status_code == 200
            assert dst.exists(f"rider:{{{rid}}}:other") and not dst.exists(pause_key(rid))
        finally:
            src.close()
            dst.close()
            await ops.close()
        log = srv.log_path.read_text()
        assert "Traceback" not in log and "unhandled error" not in log, log
    moving = MovedError(f"{slot} 127.0.0.1:1")  # what a MULTI gives up with
    assert isinstance(moving, REDIS_DOWN) and isinstance(AskError(f"{slot} 127.0.0.1:1"), REDIS_DOWN)
    assert redis_unavailable(moving).code == "redis_unavailable"
    assert "slot is being moved" in redis_unavailable(moving).message


@pytest.mark.parametrize("first", ["the_marks_node", "another_node"])
def test_a_scaled_server_stopped_while_its_first_redis_address_is_down_stops_cleanly(tmp_path, first) -> None:  # type: ignore[no-untyped-def]
    """``tracker serve --time-scale`` on a cluster named by every node, the first (the node it
    started from) killed, then Ctrl-C: the server leaves its clock mark through another node, or,
    when the dead node holds the mark, says it could not; either way a clean stop, exit 0. (It
    used to reach the cluster only through the address it had started from: exit 1 and a
    ``RedisClusterUnreachableError`` traceback, which the warning's ``except`` did not catch.)"""
    with EmbeddedCluster(tmp_path / "cluster") as cluster:
        holder = cluster.node_for(agreement.MARK_KEY)
        dead = holder if first == "the_marks_node" else next(n for n in cluster.nodes if n is not holder)
        url = ",".join(f"redis://127.0.0.1:{n.port}" for n in [dead, *(n for n in cluster.nodes if n is not dead)])
        srv = ServerProcess(redis_url=url, data_dir=tmp_path / "srv", env={"TRACKER_TIME_SCALE": "300"})
        reader = redis.Redis(host="127.0.0.1", port=holder.port, decode_responses=True)
        try:
            srv.start()
            assert f"redis=redis://127.0.0.1:{dead.port} " in srv.log_tail(200)  # it started from that one
            ahead = int(reader.get(agreement.MARK_KEY).split()[0])  # the running mark: 20 real s ahead
            os.kill(dead.pid, signal.SIGKILL)  # type: ignore[arg-type]
            status = srv.stop()
            log = srv.log_path.read_text()
            assert status == 0 and "Traceback" not in log and "tracker stopped" in log, log
            warned = "could not leave the scaled clock's mark in Redis at its stop" in log
            if dead is holder:
                assert warned, log
            else:  # left at its time then, before the running mark
                assert not warned and int(reader.get(agreement.MARK_KEY).split()[0]) < ahead, log
        finally:
            reader.close()
            srv.cleanup()
