"""The docs stay true: every setting is documented, the README commands are the real ones."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.settings import describe

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [env for env, _, _ in describe() if f"`{env}`" not in text]
    assert not missing, f"settings missing from docs/architecture.md: {missing}"


def test_serve_help_lists_every_setting_with_its_default() -> None:
    shown = subprocess.run([sys.executable, "-m", "tracker", "serve", "--help"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "TRACKER_STALE_AFTER_S [30.0]" in shown.stdout and "TRACKER_SECRET [unset]" in shown.stdout
    assert "TRACKER_DATA_DIR [.tracker]" in shown.stdout, shown.stdout  # a path as a user writes it
    missing = [env for env, _, _ in describe() if f"  {env} [" not in shown.stdout]
    assert not missing, f"settings missing from tracker serve --help: {missing}"


def test_protocol_doc_keeps_the_fixed_contract() -> None:
    ours = (ROOT / "docs" / "protocol.md").read_text()
    fixed = next((p for p in (ROOT.parent / "shared" / "PROTOCOL.md", Path("/work/shared/PROTOCOL.md")) if p.exists()),
                 None)
    if fixed is None:  # (as the replay tests, which need ../shared/mdrp too)
        pytest.fail("the fixed contract ../shared/PROTOCOL.md is missing")
    contract = fixed.read_text().rstrip("\n")
    for line in contract.splitlines():
        assert line in ours, f"docs/protocol.md lost a line of the fixed contract: {line!r}"
    # verbatim and first, as it says: additions go below it, not inside it
    assert ours.startswith(contract + "\n"), "docs/protocol.md must begin with the fixed contract, unchanged"


def test_readme_has_exactly_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for marker in ("serve-command", "test-command"):
        block = re.search(rf"<!-- {marker} -->\s*```\s*\n(.+?)\n```", readme)
        assert block, marker
    assert "tracker serve" in re.search(r"<!-- serve-command -->\s*```\s*\n(.+?)\n```", readme).group(1)


def test_readme_says_what_the_two_commands_need_besides_python() -> None:
    readme = (ROOT / "README.md").read_text()
    before = readme.split("## Two commands")[1].split("<!-- serve-command -->")[0]
    deps = (ROOT / "scripts" / "system-deps").read_text()
    assert "`scripts/system-deps`" in before
    for package in ("gcc", "python3-dev", "python3-venv", "chromium"):
        assert package in deps and f"`{package}`" in before, package


def test_replay_docs_name_the_way_to_match_a_servers_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    mdrp = protocol.split("\n## MDRP replay\n")[1].split("\n## ")[0]
    for doc in (readme, mdrp):
        assert "--print-server-env" in doc
