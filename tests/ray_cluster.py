"""A real two-node Ray cluster on this machine for the Ray tests, started once per test session.

``ray start --head --block`` and ``ray start --address ... --block``, each in its own session (process
group), so stopping them is two ``killpg`` calls and nothing of theirs survives the test run. The second
node carries the custom resource ``replica_node``: replicas that ask for it land there, off the head.
Dashboard off, a 100 MB object store per node, 1 + 2 CPUs, every port chosen free, a temp dir of its
own (processes are found, and leftovers checked, by that path).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.server import free_port

RAY = str(Path(sys.executable).with_name("ray"))
WORKER_RESOURCE = "replica_node"
DEBUG_STOP = bool(os.environ.get("DEBUG_RAY_STOP"))


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s}s")


MARK = "NEURON_EXPLAINER_TEST_RAY"
"""Set in the nodes' environment, so every process they start (workers rename themselves) carries it."""


def ray_pids(marker: str) -> list[int]:
    """Live processes whose environment has ``MARK=marker``."""
    needle = f"{MARK}={marker}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if needle in environ and state != "Z":
            found.append(int(entry.name))
    return found


class RayCluster:
    """``with RayCluster() as cluster: cluster.address``: a head and one worker node, both on loopback."""

    def __init__(self, head_cpus: int = 1, worker_cpus: int = 2) -> None:
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.temp = tempfile.mkdtemp(prefix="ner-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            MARK: self.temp,
        }

    def _node_ports(self) -> list[str]:
        return [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--object-store-memory=100000000",
            "--include-log-monitor=false",
            "--disable-usage-stats",
        ]

    def _start(self, args: list[str], name: str) -> None:
        log = open(Path(self.temp) / f"{name}.out", "wb")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen([RAY, "start", "--block", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.procs.append(proc)

    def start(self) -> RayCluster:
        try:
            return self._start_nodes()
        except BaseException:
            self.stop()
            raise

    def _start_nodes(self) -> RayCluster:
        started = time.monotonic()
        self._start(
            ["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}", "--include-dashboard=false",
             f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp}", *self._node_ports()],
            "head",
        )  # fmt: skip
        _wait_port(self.port, 60)
        resources = json.dumps({WORKER_RESOURCE: 100})
        self._start(
            [f"--address={self.address}", f"--num-cpus={self.worker_cpus}", f"--resources={resources}",
             *self._node_ports()],
            "worker",
        )  # fmt: skip
        self.wait_nodes(2, 90)
        self.start_s = time.monotonic() - started
        return self

    def wait_nodes(self, n: int, timeout_s: float) -> None:
        """Until ``n`` nodes are alive (asked through ``ray status``, so this process stays no driver)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a ray node exited ({proc.returncode}): {self.logs()}")
            out = subprocess.run([RAY, "status", f"--address={self.address}"], env=self.env, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
            if out.returncode == 0 and out.stdout.count("node_") >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"{n} ray nodes not alive after {timeout_s}s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in Path(self.temp).glob("*.out"))

    def stop(self) -> list[int]:
        """Stop both nodes and every process they started; returns what was still alive after (should be [])."""
        for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            for proc in reversed(self.procs):  # the worker node before the head
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and (any(p.poll() is None for p in self.procs) or ray_pids(self.temp)):
                time.sleep(0.2)
            if DEBUG_STOP:
                print(sig, [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()[:80]) for pid in ray_pids(self.temp)])
        for pid in ray_pids(self.temp):  # anything that left the groups (none expected)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        left = ray_pids(self.temp)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
