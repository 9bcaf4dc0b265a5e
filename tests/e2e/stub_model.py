"""A stub of an OpenAI-compatible chat completions API, served from the test process.

The example agent (examples/agent) calls ``POST <baseURL>/chat/completions``; on the real
node its pod reaches the host on the node's bridge address, so the stub listens there
(never on 0.0.0.0). Every request is recorded (path, headers, JSON body) for the test to
check, and each gets the same completion: ``answer`` (default :data:`ANSWER`) with
:data:`PROMPT_TOKENS` and :data:`COMPLETION_TOKENS` in its ``usage``, or the error
``status`` when it is not 200 (the response shape of
https://platform.openai.com/docs/api-reference/chat/object).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = 'Fixed the "off by one" bug.\nDetails:\tsee answer.md \u2014 done (caf\u00e9).'
"""The completion's message content: quotes, a newline, a tab and non-ASCII text, so
that the agent's JSON handling is exercised."""
PROMPT_TOKENS = 21
COMPLETION_TOKENS = 8


@dataclass
class Request:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StubModel:
    """A running stub server on ``host`` (an ephemeral port); a context manager.

    Attributes:
        host: the address it listens on (the node's bridge address in the e2e tests).
        answer: the completion's message content.
        status: the HTTP status of every answer (not 200: an error, no completion).
        requests: what it received, in order (appended from the server's threads).

    """

    host: str
    answer: str = ANSWER
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The agent's ``baseURL``: ``http://<host>:<port>/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> StubModel:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                stub.requests.append(Request("POST", self.path, dict(self.headers), body))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if stub.status != 200:
                    self.send_error(stub.status)
                    return
                reply = json.dumps(
                    {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "model": body.get("model") if isinstance(body, dict) else None,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": stub.answer},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": PROMPT_TOKENS,
                            "completion_tokens": COMPLETION_TOKENS,
                            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
