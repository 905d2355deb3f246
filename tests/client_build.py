"""Running the TypeScript client's tools from tests: codegen, tsc and the asset build (client/build.mjs)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "node_modules" / ".bin"


def run_tool(
    args: list[str], timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a node tool from the repository root; never raises on a non-zero exit (callers assert)."""
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else dict(env),
    )


def codegen() -> None:
    """`npm run codegen`: client/src/generated/ from schema/schema.graphql and client/operations/."""
    done = run_tool([str(BIN / "graphql-codegen"), "--config", "codegen.yml", "--silent"])
    assert done.returncode == 0, done.stdout + done.stderr


def build_assets() -> None:
    """`npm run build`: codegen, then GraphiQL and the viewer into the server's static folder."""
    done = run_tool(["node", "client/build.mjs"])
    assert done.returncode == 0, done.stdout + done.stderr


def tsc(project: str) -> subprocess.CompletedProcess[str]:
    return run_tool([str(BIN / "tsc"), "--noEmit", "--pretty", "false", "-p", project])
