"""A stand-in OpenAI-compatible chat server on loopback, for testing what salesloop sends to a remote model.

It speaks the documented wire format of `POST /v1/chat/completions` (request: model, messages, max_tokens,
temperature; response: choices[0].message.content, finish_reason, usage) and records every request body, so a test
can check, for instance, that no personal data left the process. What it answers is up to the test's `reply`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tools.loopback import LoopbackServer

Reply = Callable[[dict], str]


class FakeOpenAIServer(LoopbackServer):
    def __init__(self, reply: Reply):
        self.reply = reply
        self.requests: list[dict] = []
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self.address}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(body)
                text = fake.reply(body)
                self._send(200, {
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                              "completion_tokens": len(text.split())},
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # keep test output clean

        return Handler
