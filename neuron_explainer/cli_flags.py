"""Command lines derived from settings dataclasses: one ``--<field>`` flag per field, its help, group,
choices and default from the field (``settings.setting``/``settings.required``), its parser from the
field's type, every default shown in ``--help``. Values are ``fire``-style (``--run_model False``), as the
original server accepted them. Used by the server (``activation_server/cli_args.py``) and ``collate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Sequence
from typing import Any


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parse_optional(text: str) -> str | None:
    return None if text.strip().lower() in ("", "none", "null") else text


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_int_list(text: str) -> tuple[int, ...] | None:
    if text.strip().lower() in ("", "none", "all"):
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


_PARSERS: dict[object, Callable[[str], Any]] = {
    bool: parse_bool,
    int: int,
    float: float,
    str: str,
    str | None: parse_optional,
    tuple[str, ...]: parse_list,
    tuple[int, ...] | None: parse_int_list,
}


def _shown(f: dataclasses.Field[Any]) -> object:
    if f.metadata.get("shown") is not None:
        return f.metadata["shown"]
    default = f.default
    if isinstance(default, tuple):
        return ",".join(str(d) for d in default)
    return default


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Any], default_group: str = "server") -> None:
    """A ``--name`` flag for each field of the settings dataclass ``cls``, grouped as the fields say."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group") or default_group
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        help_text = f.metadata.get("help", "")
        if env := f.metadata.get("env"):
            help_text += f" (env {env})"
        required = f.default is dataclasses.MISSING
        if required:
            help_text += " [required]"
        elif f.repr:  # a field with repr=False is a secret: its value is never printed
            help_text += f" [default: {_shown(f)}]"
        flag = _PARSERS[hints[f.name]]
        extra: dict[str, Any] = (
            {"nargs": "?", "const": True, "metavar": "BOOL"} if hints[f.name] is bool else {}
        )  # --flag = True
        group.add_argument(
            f"--{f.name}",
            type=flag,
            default=None if required else f.default,
            required=required,
            choices=f.metadata.get("choices"),
            help=help_text,
            **extra,
        )


def settings_from_args(cls: type[Any], args: argparse.Namespace, argv: Sequence[str]) -> Any:
    """``cls`` from parsed flags; a field with an ``env`` takes that variable when its flag is absent."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        env = f.metadata.get("env")
        if env and f"--{f.name}" not in given and os.environ.get(env):
            value = _PARSERS[hints[f.name]](os.environ[env])
        values[f.name] = value
    return cls(**values)
