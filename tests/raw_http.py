"""A minimal keep-alive HTTP/1.1 client for load tests and benches: hundreds of concurrent connections
from one process without the client's own overhead (httpx's) capping the rate or the CPU."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RawClient:
    """One connection; ``await client.post_json(path, body)`` -> (status, parsed JSON body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self._reader, self._writer

    async def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        try:
            return await self._post(path, payload)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # The server closed a kept-alive connection that sat idle (uvicorn: after 5 s): reconnect once.
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            await self.close()
            return await self._post(path, payload)

    async def _post(self, path: str, payload: Any) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        reader, writer = await self._connect()
        head = f"POST {path} HTTP/1.1\r\nHost: load\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        length = int(headers["content-length"])
        data = await reader.readexactly(length)
        if headers.get("connection", "").strip() == "close":
            await self.close()
        return status, json.loads(data) if data else None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
