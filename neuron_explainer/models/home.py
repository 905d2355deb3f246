"""Where neuron-explainer keeps what it builds or downloads: the toy model, autoencoder files.

``$NEURON_EXPLAINER_HOME`` overrides the default ``~/.cache/neuron-explainer``. Everything written
below it goes through ``atomic_dir`` / ``atomic_file`` (temp + rename), so two servers starting at
once never see a half-written folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

HOME_ENV = "NEURON_EXPLAINER_HOME"


def neuron_explainer_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "neuron-explainer")


def atomic_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Make ``target`` by calling ``build(tmp)`` on a sibling temp folder, then renaming it into place.

    If another process wins the race, its folder is kept and ours is discarded; either way the
    returned folder is complete.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def atomic_file(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temp file in the same folder and ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
