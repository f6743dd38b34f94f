"""A load test of an https server: its sockets are wss://, over TLS, and every client checks the
server's certificate as told (the system's CAs, ``--ca-file``, or ``--insecure``). Before, the
users' socket client spoke plain text to a TLS port whatever the URL said."""
from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from loadtests import tls
from loadtests.wsclient import WsClient
from tests.front_proxy import FrontProxy, self_signed
from tracker.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "loadtest-tls-secret-0123456789abcdef0123456789"



@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https(cert: tuple[Path, Path]) -> Iterator[tuple[ServerProcess, int]]:
    """A server behind a TLS-terminating proxy, as a staging server with its own certificate: (server, TLS port)."""
    with ServerProcess(secret=SECRET, env={"TRACKER_DISPATCH_INTERVAL_S": "2", "TRACKER_LOG_LEVEL": "warning"}) as srv, \
            FrontProxy(srv.port, tls=cert) as proxy:
        yield srv, proxy.port


def ping(client: WsClient) -> dict:
    """Send a ping on a merchant socket and return the first pong."""
    client.send({"type": "ping", "id": "tls"})
    return next(m for m in client.messages() if m.get("type") == "pong")


@pytest.mark.parametrize("checked", ["ca file", "insecure"])
def test_the_socket_client_speaks_tls_to_a_wss_url(https: tuple[ServerProcess, int], cert: tuple[Path, Path],
                                                   checked: str) -> None:
    srv, port = https
    context = tls.context(str(cert[0])) if checked == "ca file" else tls.context(insecure=True)
    client = WsClient(f"wss://127.0.0.1:{port}/v1/ws/merchant", srv.token("merchant", "m-tls"), timeout=5, tls=context)
    try:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert ping(client) == {"type": "pong", "ref": "tls"}
    finally:
        client.close()


def test_the_socket_client_refuses_a_certificate_it_was_not_told_to_trust(https: tuple[ServerProcess, int]) -> None:
    srv, port = https
    with pytest.raises(ssl.SSLCertVerificationError):
        WsClient(f"wss://127.0.0.1:{port}/v1/ws/merchant", srv.token("merchant", "m-tls"), timeout=5)


def test_a_run_against_an_https_server_with_its_ca_file(https: tuple[ServerProcess, int], cert: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """Users' sockets and requests, and the cleanup after the run, all over TLS."""
    _, port = https
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), "--server", f"https://127.0.0.1:{port}",
                           "--secret", SECRET, "--ca-file", str(cert[0]), "--csv", str(tmp_path), "--riders", "2",
                           "--customers", "2", "--merchants", "1", "--time", "6s", "--quiet"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["result"] == "ok" and int(lines["fixes_sent"]) > 0 and int(lines["orders_placed"]) > 0, done.stdout
    assert lines["orders_ended"].split()[0].isdigit(), done.stdout


def test_a_run_against_an_https_server_whose_certificate_it_cannot_check_fails_and_says_why(
        https: tuple[ServerProcess, int], tmp_path: Path) -> None:
    _, port = https
    done = subprocess.run([sys.executable, str(ROOT / "loadtests" / "run.py"), "--server", f"https://127.0.0.1:{port}",
                           "--secret", SECRET, "--csv", str(tmp_path), "--riders", "1", "--customers", "0",
                           "--merchants", "1", "--time", "3s", "--quiet"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert any(line.startswith("FAILED: no socket connected: ") and "CERTIFICATE_VERIFY_FAILED" in line
               for line in done.stdout.splitlines()), done.stdout
