"""A small OpenAI-protocol server for tests and benchmarks: deterministic answers, injectable faults.

``/v1/chat/completions`` answers from the prompt it gets:
- a simulation request (the last user turn is JSON with ``activations``) gets 10 for every token
  whose word appears in ``to_find`` and 0 elsewhere;
- an attention pair request (``logprobs`` asked) gets "1" with p = 0.9 when the ``**to**`` token's
  word appears in the explanation, else p = 0.1;
- an explanation request gets "the words a, b" from the top-valued tokens of the last user turn
  (``**to**`` tokens for attention heads);
- a detection request (numbered excerpts) gets ``{"answers": [...]}`` with 1 for an excerpt holding a
  word of the explanation (stopwords such as "the" or "words" do not count), and a fuzzing request 1
  for an excerpt whose every ``<<marked>>`` token is such a word.
``/v1/completions`` with ``echo`` returns the prompt's tokens (a whitespace tokenizer) with top
logprobs: at each ``<tab>unknown`` after the last ``<start>``, mass on "10" when the line's token
is mentioned in the explanation, else on "0".

Faults are queued per path and consumed one per request: "429", "500", "400", "slow" (sleep
``slow_s`` first), "malformed" (a reply that does not parse), "short" (a JSON reply with one
activation too few). ``latency_s`` delays every answer. Settable on the object or over
``POST /admin/faults {"path", "faults"}`` and ``POST /admin/latency {"seconds"}``.
Run it with ``async with serve(fake) as base_url`` (real uvicorn on a free loopback port), or with
``with serve_in_thread(fake) as base_url`` on its own event loop in a thread, for a server in another
process to call while the test itself blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CHAT = "/v1/chat/completions"
CLASSIFIER_SYSTEM_START = "You are checking an explanation of one neuron"
_STOPWORDS = {"the", "a", "an", "of", "to", "in", "and", "or", "word", "words", "token", "tokens", "this", "like"}
COMPLETIONS = "/v1/completions"
_WORD = re.compile(r"[a-z0-9']+")
_TOKEN = re.compile(r"[\t ]?[^\s]+|\s")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _mentioned(token: str, explanation_words: set[str]) -> bool:
    words = _WORD.findall(token.lower())
    return bool(words) and all(w in explanation_words for w in words)


@dataclass
class FakeOpenAI:
    latency_s: float = 0.0
    slow_s: float = 5.0
    reject_json_mode: bool = False
    """Answer 400 to ``response_format`` (an endpoint without JSON mode)."""
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def inject(self, path: str, *faults: str) -> None:
        self.faults[path].extend(faults)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(CHAT, self._chat, methods=["POST"]),
                Route(COMPLETIONS, self._completions, methods=["POST"]),
                Route("/admin/faults", self._set_faults, methods=["POST"]),
                Route("/admin/latency", self._set_latency, methods=["POST"]),
            ]
        )

    async def _set_faults(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.inject(body["path"], *body["faults"])
        return JSONResponse({"queued": len(self.faults[body["path"]])})

    async def _set_latency(self, request: Request) -> JSONResponse:
        self.latency_s = float((await request.json())["seconds"])
        return JSONResponse({"latency_s": self.latency_s})

    async def _answer(self, path: str, request: Request) -> tuple[dict[str, Any], str | JSONResponse]:
        body = await request.json()
        self.requests.append((path, body))
        fault = self.faults[path].popleft() if self.faults[path] else ""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault in ("429", "500", "400"):
            return body, JSONResponse({"error": {"message": f"injected {fault}", "type": "fake"}}, int(fault))
        if self.reject_json_mode and "response_format" in body:
            return body, JSONResponse({"error": {"message": "response_format unsupported"}}, 400)
        return body, fault

    async def _chat(self, request: Request) -> JSONResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body, fault = await self._answer(CHAT, request)
            if isinstance(fault, JSONResponse):
                return fault
            messages = body["messages"]
            last = messages[-1]["content"]
            logprobs = None
            if fault == "malformed":
                content = "I think these tokens are interesting, but I will not say how much."
            elif body.get("logprobs"):
                content, logprobs = self._pair_answer(last)
            elif messages[0]["content"].startswith(CLASSIFIER_SYSTEM_START):
                content = self._classify(last, short=fault == "short")
            elif (document := self._json_document(messages)) is not None:
                content = self._simulate(document, short=fault == "short")
            else:
                content = self._explain(messages[0]["content"], last)
            return JSONResponse(
                {
                    "id": "fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                            "logprobs": logprobs,
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        finally:
            self.in_flight -= 1

    @staticmethod
    def _json_document(messages: list[dict[str, str]]) -> dict[str, Any] | None:
        """The simulation document: the last user turn that is JSON with ``activations``."""
        for message in reversed(messages):
            if message["role"] != "user":
                continue
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(message["content"])
                if isinstance(data, dict) and "activations" in data:
                    return data
        return None

    @staticmethod
    def _simulate(document: dict[str, Any], short: bool) -> str:
        explanation = _words(document.get("to_find", ""))
        entries = [
            {"token": e["token"], "activation": 10 if _mentioned(e["token"], explanation) else 0}
            for e in document["activations"]
        ]
        return json.dumps({"to_find": document.get("to_find"), "activations": entries[:-1] if short else entries})

    @staticmethod
    def _classify(last: str, short: bool) -> str:
        explained = re.search(r"^Explanation: this neuron responds to (.*)\.$", last, re.M)
        words = _words(explained.group(1) if explained else "") - _STOPWORDS
        answers = []
        for line in re.findall(r"^\d+: (.*)$", last, re.M):
            marked = re.findall(r"<<(.+?)>>", line)
            if marked:
                answers.append(int(all(_mentioned(t, words) for t in marked)))
            else:
                answers.append(int(bool(_words(line) & words)))
        return json.dumps({"answers": answers[:-1] if short else answers})

    @staticmethod
    def _pair_answer(last: str) -> tuple[str, dict[str, Any]]:
        explanation = last.split("\n", 1)[0]
        to = re.search(r"\*\*(.+?)\*\*", last.split("Text:", 1)[-1])
        p1 = 0.9 if to and _mentioned(to.group(1), _words(explanation)) else 0.1
        top = [
            {"token": "1", "logprob": math.log(p1), "bytes": None},
            {"token": "0", "logprob": math.log(1 - p1), "bytes": None},
        ]
        answer = "1" if p1 > 0.5 else "0"
        return answer, {
            "content": [{"token": answer, "logprob": math.log(max(p1, 1 - p1)), "bytes": None, "top_logprobs": top}]
        }

    @staticmethod
    def _explain(system: str, last: str) -> str:
        if "attention head" in system:
            tokens = re.findall(r"\*\*(.+?)\*\*", last)
            return " attends to the words " + ", ".join(dict.fromkeys(t.strip() for t in tokens)) + "."
        pairs = [line.rsplit("\t", 1) for line in last.splitlines() if "\t" in line]
        best = sorted(((int(v), t.strip()) for t, v in pairs if v.isdigit()), reverse=True)
        top = list(dict.fromkeys(t for v, t in best if v >= 5 and t))[:3]
        return " the words " + ", ".join(top) + "."

    async def _completions(self, request: Request) -> JSONResponse:
        body, fault = await self._answer(COMPLETIONS, request)
        if isinstance(fault, JSONResponse):
            return fault
        prompt: str = body["prompt"]
        logprobs = None if fault == "malformed" else self._prompt_logprobs(prompt)
        return JSONResponse(
            {
                "id": "fake",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "text": prompt if body.get("echo") else "",
                        "finish_reason": "length",
                        "logprobs": logprobs,
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
            }
        )

    @staticmethod
    def _prompt_logprobs(prompt: str) -> dict[str, Any]:
        section = prompt.rfind("<start>")
        explained = re.findall(r"activates for (.*)\.\n", prompt[:section])
        explanation = _words(explained[-1] if explained else "")
        tokens, offsets, tops = [], [], []
        for match in _TOKEN.finditer(prompt):
            token, offset = match.group(0), match.start()
            top: dict[str, float] | None = {token: -0.5} if offset else None
            if offset > section and token == "\tunknown":
                line = prompt[prompt.rfind("\n", 0, offset) + 1 : offset]
                hit = _mentioned(line, explanation)
                top = {"10": math.log(0.9), "0": math.log(0.1)} if hit else {"0": math.log(0.9), "1": math.log(0.1)}
            tokens.append(token)
            offsets.append(offset)
            tops.append(top)
        return {
            "tokens": tokens,
            "text_offset": offsets,
            "top_logprobs": tops,
            "token_logprobs": [None] + [-0.5] * (len(tokens) - 1),
        }


@contextlib.asynccontextmanager
async def serve(fake: FakeOpenAI, port: int = 0) -> AsyncIterator[str]:
    """Run ``fake`` under uvicorn on loopback (free port by default); yields the ``base_url`` (``.../v1``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app(), log_level="warning", lifespan="off", ws="none", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def serve_in_thread(fake: FakeOpenAI, port: int = 0) -> Iterator[str]:
    """``serve`` in a daemon thread with its own event loop; yields the ``base_url``, stops on exit."""
    started: list[str] = []
    ready = threading.Event()
    errors: list[BaseException] = []
    holder: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    async def run() -> None:
        stop = asyncio.Event()
        holder["stop"] = (asyncio.get_running_loop(), stop)
        async with serve(fake, port) as url:
            started.append(url)
            ready.set()
            await stop.wait()

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as e:  # reported to the caller below
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=target, name="fake-openai", daemon=True)
    thread.start()
    ready.wait(30)
    if errors or not started:
        raise RuntimeError(f"fake OpenAI server did not start: {errors}")
    try:
        yield started[0]
    finally:
        loop, stop = holder["stop"]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def main() -> None:
    """Run standalone: ``python tests/fake_openai.py --port 0 --latency 0.2``; prints the base URL."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()

    async def run() -> None:
        fake = FakeOpenAI(latency_s=args.latency)
        async with serve(fake, port=args.port) as url:
            print(url, flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
