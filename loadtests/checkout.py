"""What the side-by-side benchmarks share: ``--code`` (the checkout whose server to measure, so
two versions run in one session, alternating) and a server of that checkout on an embedded
Redis of its own (one that does not start: one line, not a traceback). Nothing here imports
``tracker`` before :func:`use_checkout` chose which."""
from __future__ import annotations

import argparse
import importlib.util
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
    """Import ``tracker`` and its dispatch kernel from ``code`` from now on, here and in the server
    processes started; returns its path. Exits with one line if either still comes from elsewhere
    (an install that takes precedence; a kernel not built in that checkout, which an editable
    install's finder fills in from its own tree)."""
    path = str(code.resolve())
    sys.path.insert(0, path)
    os.environ["PYTHONPATH"] = path  # the server process imports the same code...
    # ...and not the current folder's: ``python -m tracker serve`` puts that first on its path, so
    # run from a checkout's root (as the docs say) it served that checkout, whatever --code said
    os.environ["PYTHONSAFEPATH"] = "1"
    import tracker

    prog = Path(sys.argv[0]).name
    where = Path(tracker.__file__ or "").resolve()
    if not where.is_relative_to(path):
        sys.exit(f"{prog}: --code {code}: tracker is imported from {where.parent}, not from "
                 "that checkout: the figures would be of the wrong code")
    kernel = _kernel_file()
    if kernel is None or not kernel.is_relative_to(path):
        found = f"is imported from {kernel.parent}" if kernel else "is not built"
        sys.exit(f"{prog}: --code {code}: its compiled kernel (dispatch_ext._kernel) {found}, not built in that "
                 f"checkout: build it there first (cd {code} && python setup.py build_ext --inplace)")
    return path


def _kernel_file() -> Path | None:
    """Where ``dispatch_ext._kernel`` is imported from (resolved), or None when it is nowhere."""
    try:
        spec = importlib.util.find_spec("dispatch_ext._kernel")
    except ImportError:
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin else None


@contextmanager
def server_with_own_redis(env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """(its Redis URL, a started :class:`~tracker.launcher.ServerProcess`) on an embedded Redis
    of its own, both stopped and their folders removed on leaving."""
    from loadtests.arguments import could_not_start
    from tracker.embedded_redis import EmbeddedRedis
    from tracker.launcher import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        try:
            redis.start()
        except RuntimeError as exc:  # (one line, not a traceback)
            could_not_start(Path(sys.argv[0]).name, exc)
        server = ServerProcess(redis_url=redis.url, data_dir=Path(tmp) / "server", env=env)
        try:
            try:
                server.start()
            except RuntimeError as exc:
                could_not_start(Path(sys.argv[0]).name, exc)
            yield redis.url, server
        finally:
            server.cleanup()
            redis.stop()


if __name__ == "__main__":  # (run as a script it would do nothing, silently)
    sys.path.insert(0, str(HERE.parent))
    from loadtests.arguments import library_module

    library_module("loadtests/checkout.py", "the side-by-side benchmarks (bench_order_steps.py, bench_fix_write.py, "
                   "bench_ops_snapshot.py: their --code)")
