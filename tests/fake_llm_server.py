"""A scripted, real HTTP server speaking the OpenAI chat-completions protocol (test helper).

It listens on ``127.0.0.1`` only, on a free port, in a background thread, and answers
``POST /v1/chat/completions`` and ``GET /v1/models``. Each chat request takes the next
behaviour from a queue (``reply``, ``status``, ``slow``, ``malformed``, ``empty``, ``drop``,
``dynamic``); when the queue is empty the ``default`` behaviour is used, and without one
the server answers HTTP 400 "script exhausted" (so the client fails at once, not retries).
Every request is recorded.

Example:
    >>> from fake_llm_server import FakeLLMServer, reply, status
    >>> with FakeLLMServer() as server:
    ...     server.push(status(429, retry_after=0), reply("```python\\nx = 1\\n```"))
    ...     # point the client at server.base_url ("http://127.0.0.1:<port>/v1")
    ...     # then: server.chat_bodies[-1]["messages"], server.chat_count ...

In a test, use the ``fake_llm`` fixture (``from fake_llm_server import fake_llm`` in a
``conftest.py``) or the context manager.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one chat request (build with the functions below)."""

    kind: str
    text: str | None = None
    code: int = 200
    message: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    usage: dict[str, int] | None = None
    model: str | None = None
    finish_reason: str = "stop"
    fn: Callable[[dict[str, Any]], str] | None = None


def reply(
    text: str,
    *,
    usage: dict[str, int] | None = None,
    model: str | None = None,
    finish_reason: str = "stop",
) -> Behaviour:
    """200 with ``choices[0].message.content == text``.

    Args:
        text: The assistant message.
        usage: Token counts to report; default counts words of prompt and reply.
        model: Model name in the response; default the one requested.
        finish_reason: ``"stop"`` or e.g. ``"length"``.
    """
    return Behaviour("reply", text=text, usage=usage, model=model, finish_reason=finish_reason)


def dynamic(fn: Callable[[dict[str, Any]], str]) -> Behaviour:
    """200 whose content is ``fn(request_body)`` (e.g. to answer according to feedback)."""
    return Behaviour("reply", fn=fn)


def status(code: int, message: str | None = None, *, retry_after: float | None = None) -> Behaviour:
    """An HTTP error with an OpenAI-style ``{"error": {...}}`` body.

    Args:
        code: HTTP status (429, 500, 401, 404 ...).
        message: ``error.message``; a default is derived from the code.
        retry_after: If given, sent as the ``Retry-After`` header (seconds).
    """
    return Behaviour("status", code=code, message=message, retry_after=retry_after)


def slow(seconds: float, text: str = "") -> Behaviour:
    """Wait ``seconds`` before replying ``text`` (to trigger client timeouts)."""
    return Behaviour("reply", text=text, delay_s=seconds)


def malformed() -> Behaviour:
    """200 with ``Content-Type: application/json`` and a body that is not JSON."""
    return Behaviour("malformed")


def empty() -> Behaviour:
    """200 with ``choices[0].message.content == None`` (a model that said nothing)."""
    return Behaviour("empty")


def drop() -> Behaviour:
    """Close the connection without answering (a connection error for the client)."""
    return Behaviour("drop")


@dataclass
class RecordedRequest:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased (``headers["authorization"]``)."""
    body: Any
    """Parsed JSON body, the raw text if it was not JSON, or ``None`` without a body."""
    time: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    """The scripted server; a context manager (starts on enter, stops on exit).

    Args:
        *script: Behaviours for the first requests, in order (same as :meth:`push`).
        default: Behaviour once the script is used up; ``None`` answers 400.
        model: Model id listed by ``GET /v1/models``.
    """

    def __init__(
        self, *script: Behaviour, default: Behaviour | None = None, model: str = "fake-model"
    ) -> None:
        self.default = default
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque(script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting and inspection ------------------------------------------------------

    def push(self, *behaviours: Behaviour) -> None:
        """Append behaviours for the next chat requests."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def chat_bodies(self) -> list[Any]:
        """JSON bodies of the chat-completions requests, in arrival order."""
        with self._lock:
            return [r.body for r in self.requests if r.path == CHAT_PATH and r.method == "POST"]

    @property
    def chat_count(self) -> int:
        """Number of chat-completions requests received."""
        return len(self.chat_bodies)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, for the client's ``base_url``."""
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind a free loopback port and serve in a daemon thread."""
        handler = type("_Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # do not wait for handlers sleeping in slow()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self._script.popleft() if self._script else self.default


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A running :class:`FakeLLMServer` with an empty script, stopped at teardown."""
    with FakeLLMServer() as server:
        yield server


_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Incorrect API key provided",
    403: "Forbidden",
    404: "The model does not exist",
    429: "Rate limit reached",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer  # set on the per-server subclass
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        text = raw.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _record(self, body: Any) -> None:
        self.fake._record(
            RecordedRequest(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
        )

    def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), headers)

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/") == MODELS_PATH:
            model = {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        body = self._read_body()
        self._record(body)
        if self.path.rstrip("/") != CHAT_PATH:
            self._error(404, f"no route POST {self.path}")
            return
        behaviour = self.fake._next()
        if behaviour is None:
            self._error(400, "fake LLM server: script exhausted (push more behaviours)")
            return
        if behaviour.delay_s > 0 and self.fake._stop.wait(behaviour.delay_s):
            return  # server stopping
        request = body if isinstance(body, dict) else {}
        if behaviour.kind == "status":
            message = behaviour.message or _DEFAULT_MESSAGES.get(behaviour.code, "error")
            headers = {}
            if behaviour.retry_after is not None:
                headers["Retry-After"] = f"{behaviour.retry_after:g}"
            self._error(behaviour.code, message, headers)
        elif behaviour.kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-fake", "choices": [ this is not json')
        elif behaviour.kind == "drop":
            self.close_connection = True
            self.connection.close()
        elif behaviour.kind == "empty":
            self._json(200, _completion(request, None, behaviour))
        else:
            text = behaviour.fn(request) if behaviour.fn else (behaviour.text or "")
            self._json(200, _completion(request, text, behaviour))

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        error_type = "invalid_request_error" if code < 500 else "server_error"
        if code == 429:
            error_type = "rate_limit_exceeded"
        body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
        self._json(code, body, headers)


def _completion(request: dict[str, Any], text: str | None, behaviour: Behaviour) -> dict[str, Any]:
    """A standard chat-completions response body."""
    if behaviour.usage is not None:
        usage = dict(behaviour.usage)
    else:
        prompt = sum(
            len(str(m.get("content", "")).split())
            for m in request.get("messages", [])
            if isinstance(m, dict)
        )
        completion = len((text or "").split())
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": behaviour.model or request.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": behaviour.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
