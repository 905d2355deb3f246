"""Azurite (the Azure Blob emulator from ``node_modules``) as a context manager for tests and benchmarks.

    with AzuriteProcess() as connection_string:
        store = AzureStore("my-container", connection_string=connection_string)

Starts ``node_modules/.bin/azurite-blob`` on a free loopback port with in-memory persistence, waits
until it answers HTTP, and stops it by pid (``npx`` would leave a grandchild holding the port).
``AzuriteProcess(on_disk=True)`` keeps blobs in its work folder instead, so ``restart()`` (stop, then
start again on the same port) brings the same blobs back: the blob service going down and coming back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A loopback port nobody listens on right now (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


class AzuriteProcess:
    """One Azurite blob service; ``__enter__`` returns its connection string, ``__exit__`` stops it."""

    def __init__(self, *, ready_timeout_s: float = 30.0, attempts: int = 3, on_disk: bool = False) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `npm ci` in {REPO}")
        self.ready_timeout_s = ready_timeout_s
        self.attempts = attempts
        self.on_disk = on_disk
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self) -> str:
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        last_error = ""
        for _ in range(self.attempts):
            self.port = free_port()
            if self._launch():
                return self.connection_string
            last_error = self._stop_process()
        self.stop()
        raise RuntimeError(f"Azurite did not start after {self.attempts} tries: {last_error}")

    def down(self) -> None:
        """Stop the service but keep its port and (``on_disk``) its blobs for ``up``."""
        self._stop_process()

    def up(self) -> None:
        """Start again on the same port (after ``down``); raises if it does not come up."""
        if not self._launch():
            raise RuntimeError(f"Azurite did not restart on port {self.port}: {self._stop_process()}")

    def restart(self) -> None:
        self.down()
        self.up()

    def _launch(self) -> bool:
        storage = ["--location", self._workdir or "."] if self.on_disk else ["--inMemoryPersistence"]
        self.process = subprocess.Popen(
            [
                str(BINARY),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                *storage,
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self._workdir,  # anything Azurite writes despite in-memory persistence lands here
        )
        return self._wait_ready()

    def stop(self) -> None:
        self._stop_process()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_ready(self) -> bool:
        """Ready = the blob endpoint answers HTTP at all (any status: an unsigned request gets 4xx)."""
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://127.0.0.1:{self.port}/{ACCOUNT}?comp=list"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _stop_process(self) -> str:
        """Stop our own process by its pid; returns what it wrote to stderr (for error messages)."""
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, 9)
                process.wait(timeout=5)
        err = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        return err.strip()[-2000:]
