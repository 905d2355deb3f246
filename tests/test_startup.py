"""Starting the server, as a user does on a fresh machine: what fails must fail at once and say why; what
works must answer its health checks while the slow part runs. Each test runs ``main.py`` as a process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.server import MAIN, ROOT, ServerProcess, free_port

TDB_FIXTURES = ROOT / "tests" / "fixtures" / "tdb"


def run_main(args: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, str, float]:
    """Runs the server command to its end; its exit status, output and wall time."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(MAIN), "--host_name", "127.0.0.1", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def base_env(tmp_path: Path) -> dict[str, str]:
    import os

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))},
        "HF_HOME": str(tmp_path / "empty-hf"),
        "NEURON_EXPLAINER_HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a firewall that drops, a dead proxy)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("network", ["offline", "refused", "black-hole"])
def test_seed_command_without_the_model_fails_fast_with_our_message(
    network: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The seed's ``--model_name gpt2-small --port 8000`` on a machine without network or cache: our
    message within 10 s, whether HF_HUB_OFFLINE is set or not (the hub refusing, or never answering)."""
    env = base_env(tmp_path)
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    elif network == "refused":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    else:
        env["HF_ENDPOINT"] = request.getfixturevalue("black_hole")
    status, output, seconds = run_main(["--model_name", "gpt2-small", "--port", str(free_port())], env)
    assert status == 1, output
    assert seconds < 10, (seconds, output)
    assert "the server cannot start: model gpt2-small (HuggingFace id 'gpt2') is not in the HuggingFace cache" in output
    assert str(tmp_path / "empty-hf" / "hub") in output and "huggingface-cli download gpt2" in output
    if network != "offline":
        assert f"the hub at {env['HF_ENDPOINT']} cannot be reached" in output, output
    assert "(MODEL_NOT_LOADED)" in output, output
    assert "Traceback" not in output and "OSError" not in output, output


def test_taken_port_fails_before_the_model_loads(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, output, seconds = run_main(["--model_name", "tiny-gpt2", "--port", str(port)], base_env(tmp_path))
    assert status == 1, output
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port N" in output, output
    assert "loading model" not in output
    assert seconds < 10, seconds


def test_live_at_once_ready_when_started_and_typed_not_ready_meanwhile(tmp_path: Path) -> None:
    """The port answers while start-up runs (slowed here by a test fault): live 200, ready 503 with the
    phase, GraphQL 503 NOT_READY, WebSocket refused; then ready."""
    env = {**base_env(tmp_path), "NEURON_EXPLAINER_TEST_FAULTS": json.dumps({"start_delay_s": 2})}
    server = ServerProcess(["--run_model", "False", "--data_root", str(TDB_FIXTURES)], env=env)
    log = server.log_path.open("wb")
    server.proc = subprocess.Popen(server.args, env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, server.log()
            try:
                live = httpx.get(f"{server.url}/health/live", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert live.status_code == 200 and live.json()["status"] == "starting", live.text
        ready = httpx.get(f"{server.url}/health/ready", timeout=1)
        assert ready.status_code == 503 and "test fault" in ready.json()["phase"], ready.text
        gql = server.post("{ modelInfo { modelName } }")
        assert gql.status_code == 503 and gql.headers["retry-after"] == "1"
        assert gql.json()["errors"][0]["extensions"]["code"] == "NOT_READY", gql.text
        with pytest.raises(InvalidStatus):
            connect(server.ws_url, open_timeout=5).close()
        assert httpx.get(f"{server.url}/metrics", timeout=1).status_code == 200  # monitoring sees the start too
        while httpx.get(f"{server.url}/health/ready", timeout=1).status_code != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        body = server.query("{ modelInfo { modelName running } }")
        assert body["data"]["modelInfo"] == {"modelName": "gpt2-small", "running": False}
        assert httpx.get(f"{server.url}/health", timeout=1).status_code == 200
    finally:
        server.stop()
    assert "ready in" in server.log()


def test_memory_snapshot_route_tells_the_truth(tmp_path: Path) -> None:
    args = ["--run_model", "False", "--cuda_memory_debugging", "True", "--data_root", str(TDB_FIXTURES)]
    with ServerProcess(args, env=base_env(tmp_path)) as server:
        response = httpx.get(f"{server.url}/dump_memory_snapshot", timeout=10)
        log = server.log()
    assert response.status_code == 400
    message = response.json()["message"]
    assert "--run_model False" in message and "no model is loaded" in message, message
    assert "start the server with --cuda_memory_debugging True" not in message
    assert "--cuda_memory_debugging True does nothing with --run_model False" in log


def test_help_shows_every_default_and_the_routes() -> None:
    from neuron_explainer.activation_server.cli_args import parser as server_parser
    from neuron_explainer.collation.cli import parser as collate_parser

    server_help = " ".join(server_parser().format_help().split())
    for flag in ("--log_format {text,json}", "--log_level {debug,info,warning,error}", "--allowed_origins"):
        assert flag in server_help, server_help
    assert "/health/ready" in server_help and "/metrics" in server_help
    assert "[default: text]" in server_help and "[default: 8" not in server_help.split("--port")[0]
    flat = " ".join(collate_parser().format_help().split())
    for shown in ("--top_k TOP_K top-activating records kept per node (exact) [default: 64]", "[default: all]"):
        assert shown in flat, flat
    assert "--model_name MODEL_NAME tiny-gpt2, gpt2-small, ... or a local HF checkpoint folder [required]" in flat
