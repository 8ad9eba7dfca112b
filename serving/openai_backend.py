"""Any OpenAI-compatible chat server (vLLM, llama.cpp's server): the model runs elsewhere, so chats leave the process.

An adapter is chosen by model name, as vLLM serves LoRA modules (`--lora-modules v0002=/path`): the request's
`model` is the adapter version, or `llm.model_id` for the base.
"""

from __future__ import annotations

import os
import time

import httpx

from configs.settings import LLMSettings
from finetune.records import AdapterRef
from prompts.templates import ChatMessage
from serving.llm import Generation, LLMError, limit_sentences

_STOP = {"stop": "eos", "length": "max_tokens"}


class OpenAICompatibleLLM:
    local = False  # chats cross the network: personal data is masked first (masking.remote_llm)

    def __init__(self, settings: LLMSettings):
        self.model_id = settings.model_id
        # No weights to hash here: the version is what the server says it serves, checked on the first call.
        self.model_version = f"{settings.base_url}#{settings.model_id}"
        self.weights = f"OpenAI-compatible server at {settings.base_url}"
        key = os.environ.get(settings.api_key_env or "", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=str(settings.base_url).rstrip("/"), headers=headers, timeout=settings.deadline_s)

    def generate(self, messages: list[ChatMessage], max_new_tokens: int, deadline_s: float, adapter: AdapterRef | None = None,
                 max_sentences: int | None = None) -> Generation:
        model = adapter.version if adapter else self.model_id
        body = {"model": model, "messages": [m.model_dump() for m in messages], "max_tokens": max_new_tokens, "temperature": 0}
        started = time.monotonic()
        try:
            response = self._client.post("/chat/completions", json=body, timeout=deadline_s)
            response.raise_for_status()
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except httpx.HTTPStatusError as exc:
            raise LLMError(f"the model server answered {exc.response.status_code} for model {model!r}: {exc.response.text[:200]}") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the model server at {self._client.base_url}: {exc}; check llm.base_url") from None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"the model server's answer is not an OpenAI chat completion ({type(exc).__name__}: {exc})") from None
        usage = data.get("usage") or {}
        # The server writes the whole answer; the limit is applied to what it sent.
        text, stopped_by = limit_sentences(text, max_sentences, _STOP.get(choice.get("finish_reason"), "eos"))
        return Generation(
            text=text, model_id=self.model_id, adapter_id=adapter.version if adapter else None,
            adapter_sha256=adapter.content_sha256 if adapter else None,
            input_tokens=int(usage.get("prompt_tokens", 0)), output_tokens=int(usage.get("completion_tokens", 0)),
            stopped_by=stopped_by, seconds=time.monotonic() - started,
        )

    def completion_logprob(self, prompt: list[dict], completion: list[dict], adapter: AdapterRef | None, max_length: int) -> float:
        raise LLMError("the openai backend cannot score completions; evaluate adapters with the transformers backend")

    def count_tokens(self, text: str) -> int:
        return len(text.split())  # an estimate: the tokenizer lives on the server
