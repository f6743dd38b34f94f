"""Start ``tracker serve`` as a child process and wait until it is ready.

Used by the tests, the load-test runner and ``tracker replay --live`` when they need a
server of their own: a free port, its own data folder or a given Redis, and a clean
stop (SIGINT, then SIGKILL) that leaves nothing behind. When the process that started it is
killed (SIGKILL: no cleanup), the server still goes: it gets SIGTERM from the kernel
(:mod:`tracker.parent_death`: start it from the main thread, or one that outlives it) and stops
its Redis, and a small helper process removes the temporary data folder once it has.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

import httpcore  # noqa: F401 - httpx loads it at its first request: here, with the importer's modules
import httpx

from tracker.auth import Role, issue_token
from tracker.embedded_redis import free_port, port_is_free
from tracker.interrupts import signals_deferred
from tracker.parent_death import stop_child, tied_to_parent


# argv: folder. Waits for end of input (the parent let go, or is gone), then for the folder's
# lock (the server in it stopped, its Redis too; a minute at most), then removes the folder.
_REMOVE_AFTER = ("import fcntl, os, shutil, sys, time\n"
                 "sys.stdin.buffer.read()\n"
                 "try:\n"
                 "    fd = os.open(os.path.join(sys.argv[1], 'tracker.lock'), os.O_RDWR)\n"
                 "except OSError:\n"
                 "    fd = None\n"
                 "deadline = time.monotonic() + 60\n"
                 "while fd is not None:\n"
                 "    try:\n"
                 "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                 "        break\n"
                 "    except BlockingIOError:\n"
                 "        if time.monotonic() > deadline:\n"
                 "            sys.exit(0)  # still in use: left as it is\n"
                 "        time.sleep(0.1)\n"
                 "shutil.rmtree(sys.argv[1], ignore_errors=True)\n")

# argv: soft hard command...: run the command with that open-file limit.
_WITH_OPEN_FILES = ("import os, resource, sys; "
                    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
                    "os.execv(sys.argv[3], sys.argv[3:])")


class ServerProcess:
    """A ``tracker serve`` child process on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        data_dir: Path | str | None = None,
        secret: str = "test-secret-0123456789abcdef0123456789abcdef",
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        log_path: Path | str | None = None,
        open_files: tuple[int, int] | None = None,
        new_session: bool = False,
        port: int | None = None,
        port_flag: str | None = None,
    ) -> None:
        """``port``: the port to listen on (default: a free one); ``port_flag``: the caller's flag that
        chose it (e.g. ``--port``), named when that port is taken, so the user knows what to change.
        ``open_files``: the child's (soft, hard) open-file limit, to rehearse a small machine.
        ``new_session``: the child in a session (and process group) of its own, so that a terminal's
        Ctrl-C reaches only the process that started it, which stops it when it is done with it
        (a load test ends its orders on it first)."""
        self.port = port or free_port()
        self.port_flag = port_flag
        self.secret = secret
        self.redis_url = redis_url
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="tracker-")
        self.data_dir = Path(data_dir) if data_dir else Path(self._tmp.name)  # type: ignore[union-attr]
        self.log_path = Path(log_path) if log_path else self.data_dir / "server.log"
        self._env = dict(env or {})
        self._args = list(args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.open_files = open_files
        self.new_session = new_session
        self._remover: subprocess.Popen[bytes] | None = None  # removes the temporary folder if we are killed

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def effective_redis_url(self) -> str:
        """The Redis this server uses: ``redis_url``, or the embedded one it started."""
        return self.redis_url or (self.data_dir / "redis.url").read_text().strip()

    def token(self, role: Role | str, sub: str, ttl_s: float = 3600) -> str:
        """A token this server accepts."""
        return issue_token(self.secret, role, sub, ttl_s)

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        if not port_is_free(self.port):  # its /readyz would answer for ours, and the run would use the wrong server
            hint = f"pick another {self.port_flag}" if self.port_flag else "try again, or free it"
            raise RuntimeError(f"port {self.port} is in use by another process: {hint}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
        env.update({"TRACKER_SECRET": self.secret, "TRACKER_DATA_DIR": str(self.data_dir), "TRACKER_LOG_FORMAT": "text"})
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self._env)
        cmd = [sys.executable, "-m", "tracker", "serve", "--port", str(self.port), *self._args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        if self.open_files is not None:  # (set by a small exec wrapper: preexec_fn is unsafe with threads)
            cmd = [sys.executable, "-c", _WITH_OPEN_FILES, *map(str, self.open_files), *cmd]
        try:
            with signals_deferred():  # (an interrupt in Popen would leave the child running, unknown to stop())
                self._start_remover()
                self.proc = subprocess.Popen(tied_to_parent(cmd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=self.new_session)
        finally:
            log.close()
        try:
            self._wait_ready(self.proc, timeout)
        except BaseException:  # not ready in time, or interrupted meanwhile: no child left behind
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"tracker serve exited with {proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tracker serve did not become ready in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (graceful), then SIGKILL after ``timeout``; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            return stop_child(proc, signal.SIGINT, timeout)
        except BaseException:  # interrupted while it stops: it goes at once, not on its own later
            proc.kill()
            proc.wait()
            raise

    def _start_remover(self) -> None:
        """For a temporary data folder: the helper that removes it should this process be killed."""
        if self._tmp is None or self._remover is not None:
            return
        self._remover = subprocess.Popen([sys.executable, "-I", "-S", "-c", _REMOVE_AFTER, str(self.data_dir)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)  # (Ctrl-C in the terminal is ours to handle)

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._remover is not None:
            assert self._remover.stdin is not None
            self._remover.stdin.close()  # (its folder is gone: it ends at once)
            self._remover.wait()
            self._remover = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

