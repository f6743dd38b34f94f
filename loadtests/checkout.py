"""What the side-by-side benchmarks share: ``--code`` (the checkout whose server to measure, so
two versions run in one session, alternating) and a server of that checkout on an embedded
Redis of its own. Nothing here imports ``tracker`` before :func:`use_checkout` chose which."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent


def add_code_option(parser: argparse.ArgumentParser) -> None:
    """The ``--code DIR`` option (default: this checkout)."""
    parser.add_argument("--code", type=Path, default=HERE.parent,
                        help="the checkout whose server to measure (default: this one)")


def use_checkout(code: Path) -> str:
    """Import ``tracker`` from ``code`` from now on, here and in the server processes started; returns its path."""
    path = str(code.resolve())
    sys.path.insert(0, path)
    os.environ["PYTHONPATH"] = path  # the server process imports the same code
    return path


@contextmanager
def server_with_own_redis(env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """(its Redis URL, a started :class:`~tracker.launcher.ServerProcess`) on an embedded Redis
    of its own, both stopped and their folders removed on leaving."""
    from tracker.embedded_redis import EmbeddedRedis
    from tracker.launcher import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        server = ServerProcess(redis_url=redis.url, data_dir=Path(tmp) / "server", env=env)
        try:
            server.start()
            yield redis.url, server
        finally:
            server.cleanup()
            redis.stop()
