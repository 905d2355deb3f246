"""Blob paths: ``/``-separated, relative, never escaping the store's root."""

from __future__ import annotations

from neuron_explainer.errors import BadInput


def check_path(path: str) -> str:
    """Return ``path`` if it names a blob inside the root; ``BadInput`` for ``..``, absolute or empty paths.

    Paths come from dataset templates and, through node ids, from users: a ``..`` segment must never
    reach the file system or a blob name.
    """
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadInput(f"blob path {path!r} must be a non-empty relative '/'-separated path", path=path)
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise BadInput(f"blob path {path!r} has an empty, '.' or '..' segment", path=path)
    return path


def check_prefix(prefix: str) -> str:
    """Like ``check_path`` but allows ``""`` (everything) and a trailing ``/``."""
    if prefix == "":
        return prefix
    check_path(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def join(*parts: str) -> str:
    """Join template parts with one ``/`` between them (trailing slashes in templates are irrelevant)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
