"""The embedded Redis is for its own server only: no other local user reaches it or its data."""
from __future__ import annotations

import stat
from pathlib import Path

from tracker.launcher import ServerProcess


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_an_embedded_redis_whose_folder_is_too_long_for_a_socket_is_still_private(tmp_path: Path) -> None:
    """A unix socket path holds ~100 bytes: with a longer data folder the embedded Redis listened
    on loopback TCP without a password, open to every local user (who could CONFIG SET dir and
    write files as the server's user). Its socket is then in a private folder of its own."""
    data_dir = tmp_path / ("d" * 120)
    with ServerProcess(data_dir=data_dir) as proc:
        url = proc.effective_redis_url
        assert url.startswith("unix://"), url
        sock = Path(url.removeprefix("unix://").split("?")[0])
        assert sock.is_socket(), sock
        assert _private(sock) and _private(sock.parent), oct(sock.parent.stat().st_mode)
    assert not sock.exists() and not sock.parent.exists()  # nothing left behind


def test_a_data_folder_the_server_creates_is_private(tmp_path: Path) -> None:
    """The folder holds the development secret, the AOF (every order, addresses included) and
    the Redis log: one the server creates is readable by its user only."""
    data_dir = tmp_path / "fresh"
    with ServerProcess(data_dir=data_dir, log_path=tmp_path / "server.log") as proc:  # (the log elsewhere: the server makes the folder)
        assert proc.effective_redis_url.startswith("unix://")
        assert _private(data_dir), oct(data_dir.stat().st_mode)
        assert (data_dir / "secret").exists() is False or _private(data_dir / "secret")
