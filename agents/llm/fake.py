"""A strict fake OpenAI-compatible endpoint on loopback, for tests and for trying prompts without a model.

`FakeEndpoint` serves `POST /v1/chat/completions` from recorded answers, one queue per model
name, in order. It is strict: a request with no recorded answer left, or one that does not
contain the text an answer `expect`s, is a violation; so is an answer left unplayed (except
for the models named `spare`, whose queues are answers a router may or may not ask for).
`verify()` (called when the `with` block ends without an exception) raises `AssertionError`
listing every violation. `GET /v1/models` lists the models that have answers recorded (or
the `models` given; an `Answer` there is served instead, e.g. a 401); it does not consume
answers and is counted in `listed`.

Besides normal completions an `Answer` can be an HTTP error (with headers, e.g. Retry-After),
a delay longer than the client's timeout, a connection dropped before or in the middle of
the body, or raw bytes (invalid JSON, invalid UTF-8). It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


@dataclass
class Answer:
    """One recorded reply."""

    content: str | None = None            # the assistant message of a 200 completion
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None              # raw body instead of a completion
    delay: float = 0.0                     # seconds before answering
    drop: Literal["before", "midway"] | None = None   # close the connection instead of answering
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = (0, 0)  # (prompt, completion) tokens; (0, 0): counted from the text; None: omitted
    refusal: str | None = None
    expect: str = ""                       # text the request's messages must contain

    @classmethod
    def text(cls, content: str, **kw: Any) -> "Answer":
        return cls(content=content, **kw)

    @classmethod
    def json(cls, obj: Any, **kw: Any) -> "Answer":
        return cls(content=json.dumps(obj), **kw)

    @classmethod
    def error(cls, status: int, message: str = "fake error", headers: dict[str, str] | None = None, **kw) -> "Answer":
        body = json.dumps({"error": {"message": message, "type": "fake", "code": None}}).encode()
        return cls(status=status, body=body, headers=headers or {}, **kw)


@dataclass
class Received:
    model: str
    body: dict[str, Any]
    authorization: str

    @property
    def text(self) -> str:
        """Every message's content, joined."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class FakeEndpoint:
    def __init__(self, answers: dict[str, list[Answer]] | None = None, models: list[str] | Answer | None = None,
                 spare: set[str] | frozenset[str] = frozenset()):
        self.queues: dict[str, list[Answer]] = {model: list(queue) for model, queue in (answers or {}).items()}
        self.spare = set(spare)                # models whose answers may be left unplayed (a router chose another)
        self.models = models                   # what GET /models answers; None: the models with answers
        self.listed = 0                        # GET /models requests served
        self.received: list[Received] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, model: str, *answers: Answer) -> "FakeEndpoint":
        with self._lock:
            self.queues.setdefault(model, []).extend(answers)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start the endpoint first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeEndpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:     # quiet
                pass

            def do_POST(self) -> None:
                endpoint._handle(self)

            def do_GET(self) -> None:
                endpoint._list(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def unplayed(self) -> list[str]:
        with self._lock:
            return [f"{model}: {len(queue)} answer(s) never requested" for model, queue in self.queues.items()
                    if queue and model not in self.spare]

    def verify(self) -> None:
        problems = self.violations + self.unplayed()
        if problems:
            raise AssertionError("fake OpenAI endpoint: " + "; ".join(problems))

    def __enter__(self) -> "FakeEndpoint":
        return self.start()

    def __exit__(self, kind, value, traceback) -> None:
        self.stop()
        if kind is None:
            self.verify()

    def requests_for(self, model: str) -> list[Received]:
        return [r for r in self.received if r.model == model]

    # --- serving ---------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        model = str(body.get("model", ""))
        received = Received(model=model, body=body, authorization=handler.headers.get("Authorization", ""))
        with self._lock:
            self.received.append(received)
            queue = self.queues.get(model) or []
            answer = queue.pop(0) if queue else None
            if not handler.path.endswith("/chat/completions"):
                self.violations.append(f"request to unknown path {handler.path}")
            if answer is None:
                self.violations.append(f"unrecorded request #{len(self.received)} for model {model!r}: "
                                       f"{received.text[-300:]!r}")
            elif answer.expect and answer.expect not in received.text:
                self.violations.append(f"request #{len(self.received)} for model {model!r} does not contain "
                                       f"{answer.expect!r}")
        if answer is None:
            answer = Answer.error(400, "fake endpoint: no recorded answer for this request",
                                  headers={"x-should-retry": "false"})
        if answer.delay and self._stopping.wait(answer.delay):
            return
        if answer.drop is not None:
            self._drop(handler, answer.drop)
            return
        payload = answer.body if answer.body is not None else self._completion(answer, body)
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:            # the client gave up (a timeout test)
            pass

    def _list(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.listed += 1
            if not handler.path.rstrip("/").endswith("/models"):
                self.violations.append(f"GET of unknown path {handler.path}")
            models = self.models if self.models is not None else list(self.queues)
        if isinstance(models, Answer):
            status, payload, headers = models.status, models.body or b"{}", models.headers
        else:
            status, headers = 200, {}
            payload = json.dumps({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                              "owned_by": "fake"} for m in models]}).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            pass

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler, how: str) -> None:
        try:
            if how == "midway":
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
                                    b'{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"ind')
                handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        handler.close_connection = True

    @staticmethod
    def _completion(answer: Answer, request: dict[str, Any]) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.refusal is not None:
            message["refusal"] = answer.refusal
        completion: dict[str, Any] = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": request.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
        }
        if answer.usage is not None:
            prompt, output = answer.usage
            if (prompt, output) == (0, 0):
                prompt = sum(len(str(m.get("content", ""))) for m in request.get("messages", [])) // 4 + 1
                output = len(answer.content or "") // 4 + 1
            completion["usage"] = {"prompt_tokens": prompt, "completion_tokens": output,
                                   "total_tokens": prompt + output}
        return json.dumps(completion).encode()
