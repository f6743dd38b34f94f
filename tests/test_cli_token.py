"""``tracker token`` prints tokens the server's auth accepts, with the claims asked for."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import jwt

from tracker.launcher import ServerProcess


def _token(*args: str, secret: str | None = "cli-secret-0123456789abcdef0123456789abcdef", data_dir: Path | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    if secret is not None:
        env["TRACKER_SECRET"] = secret
    if data_dir is not None:
        env["TRACKER_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "tracker", "token", *args], env=env, capture_output=True, text=True,
                          timeout=30, cwd=cwd)


def test_token_carries_role_sub_and_expiry() -> None:
    result = _token("--role", "rider", "--sub", "rider-7", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), "cli-secret-0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    assert claims["role"] == "rider" and claims["sub"] == "rider-7"
    assert 100 <= claims["exp"] - time.time() <= 121
    short = _token("--role", "rider", "--sub", "rider-7", "--ttl", "0.5")  # rounded up, never already expired
    claims = jwt.decode(short.stdout.strip(), "cli-secret-0123456789abcdef0123456789abcdef", algorithms=["HS256"],
                        options={"verify_exp": False})  # (it may have expired by now: the claims are the point)
    assert claims["exp"] == claims["iat"] + 1


def test_token_without_secret_signs_with_the_running_servers_dev_secret(tmp_path: Path) -> None:
    # the README's tour: `tracker serve` (no TRACKER_SECRET, its embedded Redis) in a folder, then `tracker token` there
    with ServerProcess(data_dir=tmp_path / ".tracker", env={"TRACKER_SECRET": ""}) as server:
        for cwd, data_dir in ((tmp_path, None), (Path("/"), tmp_path / ".tracker")):  # its folder, or --data-dir elsewhere
            out = _token("--role", "operator", "--sub", "ops", secret=None, cwd=cwd,
                         **({} if data_dir is None else {"data_dir": data_dir}))
            assert out.returncode == 0, out.stderr
            resp = httpx.get(f"{server.base_url}/v1/orders/nope", headers={"Authorization": f"Bearer {out.stdout.strip()}"})
            assert resp.status_code == 404, resp.text  # signed with the server's secret: authenticated


def test_token_without_any_secret_refuses_instead_of_inventing_one(tmp_path: Path) -> None:
    out = _token("--role", "operator", "--sub", "ops", secret=None, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(tmp_path / ".tracker" / "secret") in lines[0] and "TRACKER_SECRET" in lines[0] and "--data-dir" in lines[0]
    assert not (tmp_path / ".tracker").exists()  # no secret made up behind the user's back


def test_bad_role_sub_and_ttl_are_refused() -> None:
    assert _token("--role", "admin", "--sub", "x").returncode == 2
    for ttl in ("0", "-5", "inf", "nan", "1e12"):
        bad_ttl = _token("--role", "rider", "--sub", "r1", "--ttl", ttl)
        assert bad_ttl.returncode == 2 and bad_ttl.stdout == "", ttl
        assert bad_ttl.stderr.count("\n") == 1 and "ttl must be" in bad_ttl.stderr, (ttl, bad_ttl.stderr)
    for sub in ("no spaces allowed", "r1\n"):
        bad_sub = _token("--role", "rider", "--sub", sub)
        assert bad_sub.returncode == 2 and "sub" in bad_sub.stderr, sub


def test_a_short_secret_is_one_clear_warning_and_still_signs() -> None:
    result = _token("--role", "rider", "--sub", "r1", secret="short")
    with warnings.catch_warnings():  # (PyJWT's own warning, in this test process)
        warnings.simplefilter("ignore")
        assert result.returncode == 0 and jwt.decode(result.stdout.strip(), "short", algorithms=["HS256"])["sub"] == "r1"
    assert result.stderr.startswith("tracker token: warning: TRACKER_SECRET is 5 bytes, under the 32"), result.stderr
    assert result.stderr.count("\n") == 1 and "InsecureKeyLengthWarning" not in result.stderr, result.stderr
    assert _token("--role", "rider", "--sub", "r1").stderr == ""  # a long one: no warning


def test_an_unreadable_development_secret_is_one_line_for_token_and_serve(tmp_path: Path) -> None:
    """A secret file that is a folder, or not text: the command says which file and what to do."""
    folder, binary = tmp_path / "folder", tmp_path / "binary"
    (folder / "secret").mkdir(parents=True)
    binary.mkdir()
    (binary / "secret").write_bytes(b"\xff\xfe\x00secret")
    for data_dir, why in ((folder, "cannot be read"), (binary, "is not text")):
        said = _token("--role", "rider", "--sub", "r1", secret=None, data_dir=data_dir)
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        line = said.stderr.strip()
        assert line.startswith(f"tracker: the development secret {data_dir / 'secret'} {why}"), said.stderr
        assert line.endswith(": remove it (a new one is made) or set TRACKER_SECRET") and "\n" not in line, line
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "REDIS_URL"}
    served = subprocess.run([sys.executable, "-m", "tracker", "serve", "--port", "0", "--data-dir", str(folder)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert served.returncode == 1 and "Traceback" not in served.stderr, served.stderr
    assert f"the development secret {folder / 'secret'} cannot be read" in served.stderr.splitlines()[-1], served.stderr
