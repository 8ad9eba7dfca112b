"""API tokens and roles: who may read which runs, decide them, audit, or administer the service.

Tokens are stored as SHA-256 hashes in a YAML file under the data dir (`salesloop tokens add` writes it), so the
file never holds a usable secret.
  rep      reads and decides the runs of leads assigned to them (the account's owner_rep_id)
  manager  reads and decides every run of the team (`team`: rep ids; empty = everyone)
  auditor  reads runs, traces and the audit log; decides nothing
  admin    the dead-letter queue and configuration; reads everything, decides nothing
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs.loader import load_yaml_model
from provenance import sha256_text
from tools.files import write_atomically

Role = Literal["rep", "manager", "auditor", "admin"]


class AuthError(Exception):
    """No or an unknown token (401), or a role that may not do this (403): the message says which."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ApiToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="who holds it, for logs and traces")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    rep_id: str | None = Field(default=None, description="the rep this token decides as (role rep)")
    team: list[str] = Field(default_factory=list, description="role manager: the reps whose runs they see; empty = all")

    @model_validator(mode="after")
    def _rep_has_id(self) -> ApiToken:
        if self.role == "rep" and not self.rep_id:
            raise ValueError(f"token {self.name!r} has role rep but no rep_id; set the CRM owner id it decides for")
        return self


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[ApiToken] = Field(default_factory=list)


class Principal(BaseModel):
    """The caller of one request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    rep_id: str | None
    team: tuple[str, ...] = ()

    def may_read(self, owner_rep_id: str | None) -> bool:
        if self.role in ("auditor", "admin"):
            return True
        if self.role == "manager":
            return not self.team or owner_rep_id in self.team
        return owner_rep_id is not None and owner_rep_id == self.rep_id

    def may_decide(self, owner_rep_id: str | None) -> bool:
        return self.role in ("rep", "manager") and self.may_read(owner_rep_id)

    @property
    def decides_as(self) -> str:
        return self.rep_id or self.name


class TokenStore:
    def __init__(self, path: Path):
        self.path = path
        self._tokens = load_yaml_model(path, TokenFile).tokens if path.is_file() else []

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError(401, "send an API token as 'Authorization: Bearer <token>' (create one with `salesloop tokens add`)")
        digest = sha256_text(authorization.removeprefix("Bearer ").strip())
        for token in self._tokens:
            if hmac.compare_digest(token.token_sha256, digest):
                return Principal(name=token.name, role=token.role, rep_id=token.rep_id, team=tuple(token.team))
        raise AuthError(401, "unknown API token; ask an admin for a token (`salesloop tokens add`)")

    def add(self, name: str, role: Role, rep_id: str | None = None, team: list[str] | None = None) -> str:
        """Create a token, store its hash, and return the token itself: the only time it is shown."""
        if any(t.name == name for t in self._tokens):
            raise AuthError(409, f"a token named {name!r} exists already in {self.path}; pick another name")
        token = "sl_" + secrets.token_urlsafe(24)
        entry = ApiToken(name=name, token_sha256=sha256_text(token), role=role, rep_id=rep_id, team=team or [])
        self._tokens.append(entry)
        data = TokenFile(tokens=self._tokens).model_dump(mode="json")
        write_atomically(self.path, yaml.safe_dump(data, sort_keys=False).encode())
        return token


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise AuthError(403, f"role {principal.role} may not do this; it needs one of: {', '.join(roles)}")
