"""A real server for tests: ``main.py`` in a subprocess, uvicorn on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "neuron_explainer" / "activation_server" / "main.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``with ServerProcess([...flags]) as server: server.query("{ ... }")``."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None, startup_timeout: float = 180) -> None:
        self.port = free_port()
        self.args = [sys.executable, str(MAIN), "--host_name", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"neuron-explainer-server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {self.startup_timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def post(self, query: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})},
                          timeout=kwargs.pop("timeout", 60), **kwargs)

    def query(self, query: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """POST a query; asserts HTTP 200 and returns the whole body (``data`` and ``errors``)."""
        response = self.post(query, variables, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text, self.log())
        body: dict[str, Any] = response.json()
        return body


def error_codes(body: Mapping[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
