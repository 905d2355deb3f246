"""``scripts/dev.sh``, the first command a user runs: quiet when nothing changed, one line per step that
runs, the tool's output only when a step fails, and a taken port refused before any set-up. Runs on the
checkout the suite runs in (set up by ``dev.sh test`` before pytest), so "nothing changed" holds."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.server import ROOT

STAMP = ROOT / "neuron_explainer" / "activation_server" / "static" / ".build-stamp"

pytestmark = pytest.mark.skipif(not STAMP.is_file(), reason="the client assets were not built by dev.sh")


def dev(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/dev.sh", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_setup_with_nothing_changed_prints_nothing_and_takes_seconds() -> None:
    status, output, seconds = dev("setup")
    assert status == 0 and output == "", output
    assert seconds < 20, seconds


def test_assets_rebuild_when_their_sources_change_with_one_line(tmp_path: Path) -> None:
    stamp = STAMP.read_text()
    STAMP.write_text("a build of other sources")
    try:
        status, output, _ = dev("setup")
    finally:
        if STAMP.read_text() != stamp:  # the step failed: leave the real build's stamp as it was
            STAMP.write_text(stamp)
    assert status == 0, output
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("==> client: codegen + GraphiQL and viewer bundles"), output
    assert lines[0].rstrip().endswith(" s")
    assert STAMP.read_text() == stamp


def test_a_failing_step_shows_its_log_and_fails(tmp_path: Path) -> None:
    """The tool's noise appears only now: the end of its log, and where the whole log is."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho 'npm noise line'\necho 'npm ERR! the reason' >&2\nexit 3\n")
    (fake / "npm").chmod(0o755)
    stamp = STAMP.read_text()
    STAMP.write_text("stale")
    try:
        status, output, _ = dev("setup", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    finally:
        STAMP.write_text(stamp)
    assert status == 1
    assert "client: codegen + GraphiQL and viewer bundles FAILED" in output and "(exit 3)" in output, output
    assert "var/log/setup/assets.log" in output and "npm ERR! the reason" in output


def test_a_taken_port_fails_before_any_set_up() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, output, seconds = dev("serve", "--port", str(port), timeout=30)
    assert status == 1
    assert f"port {port} on 127.0.0.1 is taken" in output and "--port N" in output, output
    assert "==> python" not in output and "listening" not in output
    assert seconds < 5, seconds
