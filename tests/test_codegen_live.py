"""`npm run codegen:live` introspects a running server (here with no model) and generates the same client
as `npm run codegen` from the checked-in SDL, so either workflow gives the same hooks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.client_build import BIN, ROOT, codegen, run_tool
from tests.server import ServerProcess

GENERATED = ROOT / "client" / "src" / "generated"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--run_model", "False", "--data_root", str(ROOT / "tests" / "fixtures" / "tdb")]) as s:
        yield s


def snapshot() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(GENERATED.glob("*.ts"))}


def test_codegen_live_equals_codegen_from_the_sdl(server: ServerProcess) -> None:
    done = run_tool(
        [str(BIN / "graphql-codegen"), "--config", "codegen.live.yml", "--silent"],
        env={**os.environ, "GRAPHQL_URL": f"{server.url}/graphql"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    live = snapshot()
    codegen()
    from_sdl = snapshot()
    assert set(live) == {"gql.ts", "graphql.ts", "hooks.ts", "index.ts"}
    for name, text in live.items():
        assert text == from_sdl[name], f"{name} differs between codegen:live and codegen"
