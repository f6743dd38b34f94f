"""A small, real Redis Cluster on this machine: several embedded ``redis-server`` nodes.

For the tests that check the server on Redis Cluster, for the load tests' scale-out run,
and for anyone who wants to try it: ``python -m tracker.embedded_cluster DIR`` starts one
and prints the ``REDIS_URL`` to give ``tracker serve``: every node's address, comma-separated
(any one would do, as the client discovers the others; with all of them a server still
starts while one is down). It is a disposable cluster for trying things: each start is a
new, empty one, and a node that dies is not restarted. Each node is an :class:`EmbeddedRedis` in cluster mode on a
loopback TCP port (its cluster bus listens on that port + 10000); the hash slots are split
evenly between them, without replicas.
"""
from __future__ import annotations

from tracker.interrupts import ImportHold, interrupted_status, stop_signals_as_ctrl_c

# Run as a command: Ctrl-C, SIGTERM and SIGHUP wait until the modules have loaded (see tracker.cli).
_HELD = ImportHold(active=__name__ == "__main__")

import argparse  # noqa: E402 - after the signals are held
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import redis  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from tracker.embedded_redis import EmbeddedRedis, free_port, lock_folder, port_is_free, stop_left_behind  # noqa: E402
from tracker.errors import StartupError  # noqa: E402

SLOTS = 16384
_BUS_OFFSET = 10000


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port_is_free(port + _BUS_OFFSET):
            return port
    raise StartupError("no free port pair for a Redis Cluster node")


class EmbeddedCluster:
    """Start ``masters`` cluster nodes under ``data_dir``, join them and split the slots."""

    def __init__(self, data_dir: Path | str, *, masters: int = 3, first_port: int | None = None) -> None:
        """``first_port``: node ``i`` listens on ``first_port + i`` (and its cluster bus 10000
        above), refused at start if taken; unset, each node takes a free port."""
        if masters < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = Path(data_dir).resolve()
        self.masters = masters
        self.first_port = first_port
        self.nodes: list[EmbeddedRedis] = []
        self._lock_fd: int | None = None

    @property
    def _slots_per_node(self) -> int:
        return -(-SLOTS // self.masters)

    @property
    def url(self) -> str:
        """The first node's URL; a cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{node.port}" for node in self.nodes]

    def start(self, timeout: float = 30.0) -> str:
        """Start a new, empty cluster and return its URL once every slot is served.

        The nodes' folders are wiped first: a cluster left there by an earlier run (its
        ``nodes.conf`` names other ports) cannot be joined again. A lock file in ``data_dir``
        (``cluster.lock``), taken before, refuses a second cluster on a folder whose cluster runs.
        """
        self._take_lock()
        try:
            for i in range(self.masters):
                stop_left_behind(self.data_dir / f"node{i}")  # (a node a killed cluster left running: hung)
                shutil.rmtree(self.data_dir / f"node{i}", ignore_errors=True)
            for i in range(self.masters):
                node = EmbeddedRedis(
                    self.data_dir / f"node{i}", port=_cluster_port() if self.first_port is None else self._given_port(i),
                    extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", "5000"),
                )
                self.nodes.append(node)
                node.start()
            self._join(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _take_lock(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create {self.data_dir}: {exc.strerror or exc}") from None
        held = lock_folder(self.data_dir / "cluster.lock")
        if isinstance(held, str):
            raise StartupError(f"{self.data_dir} holds a running cluster (pid {held}): stop it, or choose another folder")
        self._lock_fd = held

    def _given_port(self, i: int) -> int:
        port = self.first_port + i  # type: ignore[operator]
        if not (port_is_free(port) and port_is_free(port + _BUS_OFFSET)):
            raise StartupError(f"port {port} (or its cluster bus port {port + _BUS_OFFSET}) is in use or out of range")
        return port

    def node_for(self, key: str) -> EmbeddedRedis:
        """The node serving ``key``'s hash slot (the slots are split evenly, in node order)."""
        return self.nodes[key_slot(key.encode()) // self._slots_per_node]

    def stop(self) -> None:
        """Stop every node, then free the folder."""
        for node in reversed(self.nodes):
            node.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "EmbeddedCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _join(self, timeout: float) -> None:
        clients = [redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5) for node in self.nodes]
        try:
            per_node = self._slots_per_node
            for i, client in enumerate(clients):
                client.execute_command("CLUSTER", "ADDSLOTS", *range(i * per_node, min(SLOTS, (i + 1) * per_node)))
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout
            while not all(self._settled(client) for client in clients):
                if time.monotonic() > deadline:
                    raise StartupError(f"Redis Cluster under {self.data_dir} did not settle within {timeout:.0f}s")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()

    def _settled(self, client: redis.Redis) -> bool:
        info = client.cluster("info")
        return (info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.masters
                and int(info.get("cluster_slots_ok", 0)) == SLOTS)


def main(argv: list[str] | None = None) -> int:
    """``python -m tracker.embedded_cluster DIR [--masters N] [--port P]``: run a local cluster until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tracker.embedded_cluster", description=main.__doc__)
    parser.add_argument("data_dir", type=Path, help="folder for the nodes' data (one subfolder each)")
    parser.add_argument("--masters", type=int, default=3, help="number of nodes (default 3)")
    parser.add_argument("--port", type=int, default=None,
                        help="the first node's port, the others on the next ones (default: free ports)")
    args = parser.parse_args(argv)
    if args.masters < 1:
        parser.error(f"--masters must be at least 1, not {args.masters}")
    logging.basicConfig(level=logging.WARNING)
    cluster = EmbeddedCluster(args.data_dir, masters=args.masters, first_port=args.port)
    with _HELD.holding() as release, stop_signals_as_ctrl_c():  # SIGTERM and SIGHUP too: the nodes stopped in order
        release()  # a signal held meanwhile is taken now
        try:
            cluster.start()
        except StartupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted while starting the cluster; the nodes started are stopped", file=sys.stderr)
            return interrupted_status()
        print(f"REDIS_URL={','.join(cluster.urls)}", flush=True)  # every node: a server starts from the first that answers
        for node in cluster.nodes:
            print(f"node pid {node.pid} on port {node.port}, data in {node.data_dir}; started as:\n  "
                  f"{node.command_line}", flush=True)
        print("Ctrl-C (or SIGTERM) stops the nodes it started; a node that dies stays down until you "
              "start it again with its command above (then stop that one yourself).", flush=True)
        try:
            while True:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            cluster.stop()
    return 0

if __name__ == "__main__":
    sys.exit(main())
