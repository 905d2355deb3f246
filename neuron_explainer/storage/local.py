"""``LocalStore``: a folder on disk as a ``BlobStore`` (a mirror of the public bucket, or our own data)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import hashlib
import os
import uuid
import weakref
from pathlib import Path

from neuron_explainer.errors import UpstreamUnavailable
from neuron_explainer.storage.base import PreconditionFailed
from neuron_explainer.storage.paths import check_path, check_prefix

LOCKS_FOLDER = ".locks"
LOCK_STRIPES = 64


def content_etag(data: bytes) -> str:
    """The ETag of a local blob: its content hash, so two processes agree without shared state."""
    return hashlib.sha256(data).hexdigest()[:32]


def _is_bookkeeping(name: str) -> bool:
    """Sidecar lock files and half-written temp files are ours, not blobs."""
    return name.startswith(".") and (name.endswith(".lock") or name.endswith(".tmp"))


class LocalStore:
    """Blobs are files under ``root``; writes go through a temp file + ``os.replace`` (readers never see
    half a file).

    A conditional ``put`` is atomic across coroutines (one ``asyncio.Lock`` per path, so waiting writers
    do not each hold a thread) and across processes (``fcntl.flock`` on one of ``LOCK_STRIPES`` lock files
    in ``.locks/`` at the root, chosen by the path's hash: a fixed handful, where a sidecar per blob left
    thousands behind). Every put takes the lock, so an unconditional write cannot slip between another
    writer's check and rename. Reads take no lock and write nothing. All file I/O runs in ``asyncio.to_thread``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).expanduser().resolve()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def location(self) -> str:
        return self._root.as_uri()

    def _file(self, path: str) -> Path:
        return self._root.joinpath(*check_path(path).split("/"))

    async def get(self, path: str) -> bytes | None:
        return await asyncio.to_thread(self._read, self._file(path), path)

    async def get_with_etag(self, path: str) -> tuple[bytes, str] | None:
        data = await self.get(path)
        return None if data is None else (data, content_etag(data))

    async def put(self, path: str, data: bytes, if_match: str | None = None) -> str:
        file = self._file(path)
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        async with lock:
            return await asyncio.to_thread(self._write, file, path, bytes(data), if_match)

    async def list(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, check_prefix(prefix))

    async def list_times(self, prefix: str) -> builtins.list[tuple[str, float]]:
        def stat(paths: builtins.list[str]) -> builtins.list[tuple[str, float]]:
            found = []
            for path in paths:
                with contextlib.suppress(FileNotFoundError):  # deleted since it was listed
                    found.append((path, self._file(path).stat().st_mtime))
            return found

        return await asyncio.to_thread(stat, await self.list(prefix))

    async def delete(self, path: str) -> None:
        file = self._file(path)
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        async with lock:
            await asyncio.to_thread(self._delete, file, path)

    async def close(self) -> None:
        return None

    def _read(self, file: Path, path: str) -> bytes | None:
        try:
            return file.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise UpstreamUnavailable(
                f"cannot read {path!r} under {self.location}: {e}", location=self.location, blob=path
            ) from e

    def _lock_file(self, path: str) -> Path:
        stripe = int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big") % LOCK_STRIPES
        folder = self._root / LOCKS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stripe:02d}.lock"

    def _write(self, file: Path, path: str, data: bytes, if_match: str | None) -> str:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            lock_file = self._lock_file(path)
            with open(lock_file, "a+b") as lock_handle:
                fcntl.flock(lock_handle.fileno(), fcntl.LOCK_EX)  # released when the handle closes
                if if_match is not None:
                    current = self._read(file, path)
                    if if_match == "" and current is not None:
                        raise PreconditionFailed(f"{path!r} already exists (create-only put)")
                    if if_match != "" and (current is None or content_etag(current) != if_match):
                        raise PreconditionFailed(f"{path!r} changed since ETag {if_match!r} was read")
                tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex}.tmp")
                try:
                    tmp.write_bytes(data)
                    os.replace(tmp, file)
                finally:
                    tmp.unlink(missing_ok=True)
        except OSError as e:
            raise UpstreamUnavailable(
                f"cannot write {path!r} under {self.location}: {e}", location=self.location, blob=path
            ) from e
        return content_etag(data)

    def _delete(self, file: Path, path: str) -> None:
        try:
            with open(file.with_name(f".{file.name}.lock"), "a+b") as lock_handle:
                fcntl.flock(lock_handle.fileno(), fcntl.LOCK_EX)  # not between another writer's check and rename
                file.unlink(missing_ok=True)
            file.with_name(f".{file.name}.lock").unlink(missing_ok=True)
        except FileNotFoundError:  # its folder is gone: so is the blob
            return
        except OSError as e:
            raise UpstreamUnavailable(
                f"cannot delete {path!r} under {self.location}: {e}", location=self.location, blob=path
            ) from e

    def _list(self, prefix: str) -> builtins.list[str]:
        directory, _, _ = prefix.rpartition("/")
        base = self._root.joinpath(*directory.split("/")) if directory else self._root
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self._root and LOCKS_FOLDER in dirnames:
                dirnames.remove(LOCKS_FOLDER)
            rel_dir = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                if _is_bookkeeping(name):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if rel.startswith(prefix):
                    found.append(rel)
        return sorted(found)
