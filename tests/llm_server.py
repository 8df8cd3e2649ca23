"""A real OpenAI-compatible chat-completions server on 127.0.0.1 that replays scripted replies.

The LLM client is tested against this over real HTTP (no mocks of the client): each POST to
``/v1/chat/completions`` takes the next scripted :class:`Reply` (or asks ``respond`` when the
script is empty), and every request is recorded so tests can count calls and check headers.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a chat message ``content``, or a ``raw`` body, after ``delay`` s."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def narrations(self) -> list[str]:
        """The segment narrations in the user message, in order ("[segment i]" blocks)."""
        user = next(m["content"] for m in self.body["messages"] if m["role"] == "user")
        blocks = re.split(r"^\[segment \d+\]\n", user, flags=re.M)[1:]
        # Blocks are separated by a blank line, and the last one runs into the closing
        # instruction; narrations themselves have no blank lines.
        return [b.split("\n\n")[0].strip() for b in blocks]


def completion(content: str | None, model: str) -> dict[str, Any]:
    """The OpenAI chat-completions response shape (what vLLM and llama.cpp send)."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client killed mid-request (the kill -9 tests do that) resets its connection: expected,
        # and not worth a traceback on the test's stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LLMServer:
    """ThreadingHTTPServer on 127.0.0.1, port chosen by the OS; ``url`` ends in ``/v1``."""

    def __init__(self, model: str = "test-model"):
        self.model = model
        self.script: deque[Reply] = deque()
        self.respond: Callable[[Request], Reply] | None = None
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        # Daemon threads: a handler still sleeping on a slow reply must not hold up shutdown.
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def calls(self) -> list[Request]:
        """The chat-completions requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def start(self) -> LLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.popleft()
        if self.respond is not None:
            return self.respond(request)
        return Reply(status=500, raw='{"error": "no scripted reply"}')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to answer

    def do_GET(self) -> None:
        owner: LLMServer = self.server.owner  # type: ignore[attr-defined]
        if self.path.rstrip("/") == "/v1/models":
            self._send(
                200,
                json.dumps({"object": "list", "data": [{"id": owner.model, "object": "model"}]}),
            )
        else:
            self._send(404, '{"error": "not found"}')

    def do_POST(self) -> None:
        owner: LLMServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/chat/completions":
            self._send(404, '{"error": "not found"}')
            return
        request = Request(
            self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
        )
        reply = owner._next(request)
        if reply.delay:
            time.sleep(reply.delay)
        body = (
            reply.raw
            if reply.raw is not None
            else json.dumps(completion(reply.content, owner.model))
        )
        self._send(reply.status, body, reply.headers)
