"""A stand-in OpenAI-compatible chat server on loopback, for testing what salesloop sends to a remote model.

It speaks the documented wire format of `POST /v1/chat/completions` (request: model, messages, max_tokens,
temperature; response: choices[0].message.content, finish_reason, usage) and records every request body, so a test
can check, for instance, that no personal data left the process. What it answers is up to the test's `reply`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from tools.loopback import JsonHandler, LoopbackServer

Reply = Callable[[dict], str]


class FakeOpenAIServer(LoopbackServer):
    def __init__(self, reply: Reply):
        self.reply = reply
        self.requests: list[dict] = []
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self.address}/v1"

    def _handler(self) -> type[JsonHandler]:
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(body)
                text = fake.reply(body)
                self.send_json(200, {
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                              "completion_tokens": len(text.split())},
                })

        return Handler
