"""``schema/schema.graphql`` is an artifact: it must equal what the live schema exports.

Re-export after changing the schema: ``.venv/bin/strawberry export-schema neuron_explainer.schema:schema --output schema/schema.graphql``
(then ``npm run codegen``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def exported_sdl() -> str:
    from strawberry.printer import print_schema

    from neuron_explainer.schema import schema

    return print_schema(schema)


def test_checked_in_sdl_equals_the_live_schema() -> None:
    checked_in = (ROOT / "schema" / "schema.graphql").read_text()
    assert checked_in.strip() == exported_sdl().strip(), (
        "schema/schema.graphql is stale: run `.venv/bin/strawberry export-schema neuron_explainer.schema:schema "
        "--output schema/schema.graphql` and `npm run codegen`"
    )


def test_a_field_added_without_re_exporting_is_caught(tmp_path: Path) -> None:
    """In a copy of the project, add a field to Query without re-exporting: the test above must fail."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("schema", "resolvers", "neuron_explainer", "tests"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=ignore, symlinks=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    query = tmp_path / "schema" / "query.py"
    source = query.read_text()
    anchor = "class Query:\n"
    assert anchor in source
    query.write_text(source.replace(anchor, anchor + "    added_without_export: int = 1\n", 1))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_schema_drift.py::test_checked_in_sdl_equals_the_live_schema",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "schema/schema.graphql is stale" in run.stdout
