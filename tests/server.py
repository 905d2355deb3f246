"""A real server for tests, uvicorn on a free loopback port: ``ServerProcess`` runs ``main.py`` in a
subprocess (for what crosses the process boundary: the command line, signals, kills, restarts);
``InProcessServer`` runs the same app in a thread of the test process (same HTTP and WebSocket, but no
5-10 s of importing torch and transformer-lens per server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "neuron_explainer" / "activation_server" / "main.py"
EMBEDDED_DEFAULT = [
    "--model_name", "tiny-gpt2",
    "--mlp_autoencoder_name", "ae-tiny-mlp",
    "--attn_autoencoder_name", "ae-tiny-attn",
    "--neuron_method", "top-tokens",
    "--attention_head_method", "top-tokens",
    "--build_demo_dataset", "True",
]  # fmt: skip
"""What ``bash scripts/dev.sh serve`` runs (with ``--data_root var/store``); test_first_hour.py checks they agree."""
FAULTY_NODE = "tiny-gpt2/mlp_neuron/0/5"
"""On the shared embedded-default server (conftest ``embedded_default``), a job on this node raises a bug."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``with ServerProcess([...flags]) as server: server.query("{ ... }")``."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None, startup_timeout: float = 180) -> None:
        self.port = free_port()
        self.args = [sys.executable, str(MAIN), "--host_name", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
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
        """The end of the server's log, without the start-up health polls (they would crowd out the cause)."""
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if '"GET /health' not in line)[-5000:]

    def post(self, query: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )

    def query(self, query: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """POST a query; asserts HTTP 200 and returns the whole body (``data`` and ``errors``)."""
        response = self.post(query, variables, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text, self.log())
        body: dict[str, Any] = response.json()
        return body


class InProcessServer(ServerProcess):
    """``ServerProcess``'s interface over ``build_app(parse_settings(args))`` served from a thread.

    The environment is the test process's own: ``env`` is checked against it, not applied (set variables
    with monkeypatch), so servers of one test cannot silently differ in what is process-wide.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None, startup_timeout: float = 180) -> None:
        differs = {k for k, v in (env or {}).items() if os.environ.get(k) != v}
        if differs:
            raise ValueError(f"an in-process server shares this process's environment; set {sorted(differs)} first")
        super().__init__(args, startup_timeout=startup_timeout)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: list[BaseException] = []

    def start(self) -> None:
        from neuron_explainer.activation_server.cli_args import parse_settings
        from neuron_explainer.activation_server.main import build_app

        settings = parse_settings(self.args[2:])  # drop the interpreter and the script
        app = build_app(settings)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", ws="websockets-sansio")
        self._server = server = uvicorn.Server(config)
        failure: list[str] = []
        lifecycle = app.state.lifecycle

        def stop_on_failure() -> None:  # as main.serve does: a failed start stops the server
            failure.append(lifecycle.failure or "start-up failed")
            server.should_exit = True

        lifecycle.on_failure = stop_on_failure

        def run() -> None:
            try:
                server.run()
            except BaseException as exc:  # reported by start()
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name=f"server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if failure:
                self.stop()
                raise RuntimeError(f"server did not start: {failure[0]}")
            if self._error or not self._thread.is_alive():
                raise RuntimeError(f"server did not start: {self._error or 'its thread ended'}")
            # The port is bound at once; the services open in the background (ready: /health/ready 200).
            if server.started and lifecycle.ready:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start in {self.startup_timeout}s")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)

    def log(self) -> str:
        return ""


def error_codes(body: Mapping[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
