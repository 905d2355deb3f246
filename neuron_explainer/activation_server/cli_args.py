"""The server's command line, derived from ``ServerSettings`` (``neuron_explainer/cli_flags.py``): one
flag per field, ``fire``-style values (``--run_model False``) as the original accepted them, and every
default shown in ``--help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neuron_explainer.cli_flags import (
    add_settings_flags,
    parse_bool,
    parse_list,
    parse_optional,
    settings_from_args,
)
from neuron_explainer.settings import ServerSettings

__all__ = ["parse_bool", "parse_list", "parse_optional", "parse_settings", "parser", "settings_from_args"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neuron-explainer",
        description="GraphQL activation server. Routes: / (viewer), /graphql (GraphiQL, POST, WebSocket), "
        "/health/live, /health/ready, /metrics (Prometheus).",
    )
    add_settings_flags(p, ServerSettings)
    return p


def parse_settings(argv: Sequence[str] | None = None) -> ServerSettings:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    settings: ServerSettings = settings_from_args(ServerSettings, args, argv)
    return settings
