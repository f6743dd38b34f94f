"""``tracker token`` prints tokens the server's auth accepts, with the claims asked for."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jwt


def _token(*args: str, secret: str | None = "cli-secret-0123456789abcdef0123456789abcdef", data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    if secret is not None:
        env["TRACKER_SECRET"] = secret
    if data_dir is not None:
        env["TRACKER_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "tracker", "token", *args], env=env, capture_output=True, text=True, timeout=30)


def test_token_carries_role_sub_and_expiry() -> None:
    result = _token("--role", "rider", "--sub", "rider-7", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), "cli-secret-0123456789abcdef0123456789abcdef", algorithms=["HS256"])
    assert claims["role"] == "rider" and claims["sub"] == "rider-7"
    assert 100 <= claims["exp"] - time.time() <= 121


def test_token_without_secret_uses_the_data_folder_secret(tmp_path: Path) -> None:
    first = _token("--role", "operator", "--sub", "ops", secret=None, data_dir=tmp_path)
    second = _token("--role", "operator", "--sub", "ops", secret=None, data_dir=tmp_path)
    assert first.returncode == 0 and second.returncode == 0
    secret = (tmp_path / "secret").read_text().strip()
    for out in (first, second):
        assert jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "ops"


def test_bad_role_and_bad_sub_are_refused() -> None:
    assert _token("--role", "admin", "--sub", "x").returncode == 2
    bad_sub = _token("--role", "rider", "--sub", "no spaces allowed")
    assert bad_sub.returncode == 2 and "sub" in bad_sub.stderr
