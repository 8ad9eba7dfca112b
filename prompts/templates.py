"""Load a prompt file, render it with Jinja StrictUndefined, and expose the file's SHA-256."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provenance import SourceRef, sha256_bytes

PROMPT_DIR = Path(__file__).resolve().parent
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


class PromptError(Exception):
    """A prompt file is broken or was rendered without a variable it needs."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class PromptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    max_sentences: int | None = Field(default=None, ge=1, description="generation stops after this many sentences of answer")
    messages: list[ChatMessage] = Field(min_length=1)


class PromptTemplate(BaseModel):
    """A prompt file as loaded: its messages are Jinja templates, its hash covers the file's bytes."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    sha256: str
    messages: tuple[ChatMessage, ...]
    variables: frozenset[str]
    max_sentences: int | None = None

    def render(self, **values: Any) -> list[ChatMessage]:
        missing = sorted(self.variables - values.keys())
        if missing:
            raise PromptError(f"prompt {self.name!r} needs variable(s) {', '.join(missing)}; got {', '.join(sorted(values)) or 'none'}")
        try:
            return [ChatMessage(role=m.role, content=_ENV.from_string(m.content).render(**values).strip()) for m in self.messages]
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.name!r}: {exc}") from None

    def source_ref(self) -> SourceRef:
        return SourceRef(kind="prompt", id=self.name, field=self.path.name, version=self.sha256)


@lru_cache(maxsize=64)
def load_prompt(name: str, directory: Path = PROMPT_DIR) -> PromptTemplate:
    path = directory / f"{name}.yaml"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise PromptError(f"no prompt named {name!r} in {directory} (known: {known})") from None
    try:
        spec = PromptFile.model_validate(yaml.safe_load(data))
        variables = frozenset().union(*(jinja2.meta.find_undeclared_variables(_ENV.parse(m.content)) for m in spec.messages))
    except (ValidationError, yaml.YAMLError, jinja2.TemplateSyntaxError) as exc:
        raise PromptError(f"prompt file {path} is invalid: {exc}") from None
    if spec.name != name:
        raise PromptError(f"prompt file {path} declares name {spec.name!r}; rename the file or the name so they agree")
    return PromptTemplate(name=name, path=path, sha256=sha256_bytes(data), messages=tuple(spec.messages), variables=variables,
                          max_sentences=spec.max_sentences)
