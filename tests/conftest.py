"""Shared fixtures: a real embedded Redis and real ``tracker serve`` processes.

Nothing here depends on a service that happens to run on the machine: Redis is the
project's own embedded ``redis-server`` on a unix socket in a temporary folder, and
servers listen on free ports. Tests isolate their data with unique ids.

``pytest --redis-cluster`` runs the same suite on Redis Cluster: every Redis the tests start
(the session's and each ``own_redis``) is then a three-node cluster of embedded nodes.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from tracker.embedded_cluster import EmbeddedCluster
from tracker.embedded_redis import EmbeddedRedis
from tracker.launcher import ServerProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis-cluster", action="store_true",
                     help="run every test on a three-node Redis Cluster instead of one redis-server")


def _start_redis(request: pytest.FixtureRequest, data_dir: Path) -> EmbeddedRedis | EmbeddedCluster:
    server: EmbeddedRedis | EmbeddedCluster
    server = EmbeddedCluster(data_dir) if request.config.getoption("--redis-cluster") else EmbeddedRedis(data_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis | EmbeddedCluster]:
    """One Redis (or Redis Cluster, with ``--redis-cluster``) for the whole session."""
    server = _start_redis(request, tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | EmbeddedCluster) -> str:
    assert redis_server.url
    return redis_server.url


@pytest.fixture(scope="session")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A ``tracker serve`` process with default settings, shared by the session."""
    proc = ServerProcess(redis_url=redis_url, data_dir=tmp_path_factory.mktemp("server"))
    proc.start()
    yield proc
    proc.cleanup()


@pytest.fixture
def start_server(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start extra servers with their own environment; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, *, shared_redis: bool = True, redis: str | None = None,
              **kwargs: object) -> ServerProcess:
        """``redis``: this Redis URL instead of the session's; ``shared_redis=False``: an embedded one."""
        proc = ServerProcess(
            redis_url=redis or (redis_url if shared_redis else None),
            data_dir=tmp_path / f"server{len(started)}",
            env=env,
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.cleanup()


@pytest.fixture
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own, for tests whose outcome depends on every rider in town
    (dispatch): riders other tests left near the same restaurant must not take part."""
    server = _start_redis(request, tmp_path / "own-redis")
    assert server.url
    yield server.url
    server.stop()


@pytest.fixture
async def http(server: ServerProcess) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique ids per test, so tests sharing one Redis never see each other's data."""
    run = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{run}"
