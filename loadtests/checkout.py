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
    parser.add_argument("--code", type=_checkout, default=HERE.parent,
                        help="the checkout whose server to measure (default: this one)")


def _checkout(text: str) -> Path:
    """``--code``: a folder holding a ``tracker`` package (otherwise the installed one would be
    measured under that folder's name)."""
    code = Path(text)
    if not (code / "tracker" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a tracker checkout (no tracker/__init__.py in it)")
    return code


def use_checkout(code: Path) -> str:
    """Import ``tracker`` from ``code`` from now on, here and in the server processes started; returns its path.
    Exits with one line if ``tracker`` still comes from elsewhere (an install that takes precedence)."""
    path = str(code.resolve())
    sys.path.insert(0, path)
    os.environ["PYTHONPATH"] = path  # the server process imports the same code
    import tracker

    where = Path(tracker.__file__ or "").resolve()
    if not where.is_relative_to(path):
        sys.exit(f"{Path(sys.argv[0]).name}: --code {code}: tracker is imported from {where.parent}, not from "
                 "that checkout: the figures would be of the wrong code")
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


if __name__ == "__main__":  # (run as a script it would do nothing, silently)
    sys.path.insert(0, str(HERE.parent))
    from loadtests.arguments import library_module

    library_module("loadtests/checkout.py", "the side-by-side benchmarks (bench_order_steps.py, bench_fix_write.py, "
                   "bench_ops_snapshot.py: their --code)")
