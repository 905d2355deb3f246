"""The generated client is typed: the project typechecks, and a deliberate misuse of a generated hook fails
`tsc` with exactly the errors marked in client/tests/typecheck/misuse.ts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.client_build import ROOT, codegen, tsc

MISUSE = ROOT / "client" / "tests" / "typecheck" / "misuse.ts"
TSC_ERROR = re.compile(r"^(?P<file>[^(\s]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+):", re.MULTILINE)
EXPECT = re.compile(r"// expect (TS\d+)")


@pytest.fixture(scope="module", autouse=True)
def generated() -> Iterator[None]:
    codegen()
    yield


def test_client_typechecks() -> None:
    done = tsc("client")
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_hooks_cover_the_operations() -> None:
    hooks = (ROOT / "client" / "src" / "generated" / "hooks.ts").read_text()
    for hook in (
        "useNodePageQuery",
        "useNodeActivationsQuery",
        "useScoreExplanationMutation",
        "useExplainNodeMutation",
        "useJobEventsSubscription",
        "useModelInfoQuery",
    ):
        assert f"export function {hook}" in hooks, hook


def test_misusing_a_generated_hook_fails_tsc() -> None:
    lines = MISUSE.read_text().splitlines()
    expected = {(n, m.group(1)) for n, line in enumerate(lines, start=1) if (m := EXPECT.search(line))}
    assert len(expected) >= 3, "misuse.ts lost its marked lines"
    done = tsc("client/tests/typecheck")
    assert done.returncode != 0, "tsc accepted a misuse of the generated hooks"
    errors = [m.groupdict() for m in TSC_ERROR.finditer(done.stdout)]
    assert errors, done.stdout + done.stderr
    assert all(e["file"].endswith("client/tests/typecheck/misuse.ts") for e in errors), done.stdout
    assert {(int(e["line"]), e["code"]) for e in errors} == expected, done.stdout


def test_readme_example_is_the_typechecked_one() -> None:
    """The README's usage example is client/src/usage-example.tsx verbatim, which `tsc -p client` checks."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```tsx\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    assert block.group(1) == (ROOT / "client" / "src" / "usage-example.tsx").read_text()
