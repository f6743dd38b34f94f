"""Shared fixtures: a real embedded Redis and real ``tracker serve`` processes.

Nothing here depends on a service that happens to run on the machine: Redis is the
project's own embedded ``redis-server`` on a unix socket in a temporary folder, and
servers listen on free ports. Tests isolate their data with unique ids.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from tracker.embedded_redis import EmbeddedRedis
from tracker.launcher import ServerProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One embedded redis-server for the whole session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
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
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own, for tests whose outcome depends on every rider in town
    (dispatch): riders other tests left near the same restaurant must not take part."""
    server = EmbeddedRedis(tmp_path / "own-redis")
    server.start()
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
