"""HTTP for the CRM connectors: timeouts, retries with backoff, the vendors' rate limits, and no secret in any error.

A request is retried on a transport error, a 5xx or a rate limit, waiting what the vendor asks (Retry-After, or
HubSpot's rate-limit interval) when that is short, else backing off exponentially. What still fails raises
CRMUnavailable, and the queue retries the event later. Errors carry the method, the path and the vendor's own
message, never a header: the tokens live in headers only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tools.crm.connector import ConnectorError, CRMUnavailable, RecordNotFound

MAX_MESSAGE = 300


class RateLimited(Exception):
    """The vendor said to slow down; `wait_s` is how long it asked for (None: it did not say)."""

    def __init__(self, wait_s: float | None, message: str):
        super().__init__(message)
        self.wait_s = wait_s


# (response) -> a RateLimited to honour, or None when the response is not a rate limit
RateLimitReader = Callable[[httpx.Response], RateLimited | None]


class CRMHttp:
    def __init__(self, vendor: str, base_url: str, headers: Callable[[], dict[str, str]], rate_limit: RateLimitReader,
                 error_message: Callable[[httpx.Response], str], timeout_s: float, max_retries: int, max_wait_s: float,
                 backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep):
        self.vendor, self.headers, self.rate_limit, self.error_message = vendor, headers, rate_limit, error_message
        self.max_retries, self.max_wait_s, self.backoff_s, self.sleep = max_retries, max_wait_s, backoff_s, sleep
        self.client = httpx.Client(base_url=base_url, timeout=timeout_s)
        self.on_unauthorized: Callable[[], None] | None = None  # e.g. fetch a new OAuth token, then try once more

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                ok_missing: bool = False) -> httpx.Response:
        """The response (2xx; also 404 when `ok_missing`); ConnectorError subclasses otherwise."""
        refreshed = False
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.request(method, path, params=params, json=json, headers=self.headers())
            except httpx.TransportError as exc:
                # The exception's text is the transport's (a timeout, a refused connection), never our headers.
                problem = f"{type(exc).__name__}"
                self._wait(attempt, None, f"{self.vendor} did not answer {method} {path}: {problem}")
                continue
            if response.status_code == 401 and self.on_unauthorized and not refreshed:
                refreshed = True
                self.on_unauthorized()
                response = self.client.request(method, path, params=params, json=json, headers=self.headers())
            limited = self.rate_limit(response)
            if limited is not None:
                self._wait(attempt, limited.wait_s, f"{self.vendor} rate limit on {method} {path}: {limited}")
                continue
            if response.status_code >= 500:
                self._wait(attempt, None, f"{self.vendor} answered {response.status_code} to {method} {path}: {self._message(response)}")
                continue
            if response.status_code == 404 and ok_missing:
                return response
            if response.status_code == 404:
                raise RecordNotFound(f"{self.vendor} has no record at {path}: {self._message(response)}")
            if response.status_code in (401, 403):
                raise ConnectorError(f"{self.vendor} refused {method} {path} ({response.status_code}): {self._message(response)}; "
                                     "check the credentials the crm settings name and their scopes")
            if response.status_code >= 400:
                raise ConnectorError(f"{self.vendor} refused {method} {path} ({response.status_code}): {self._message(response)}")
            return response
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _wait(self, attempt: int, asked_s: float | None, problem: str) -> None:
        """Sleep before the next attempt, or raise CRMUnavailable when attempts are used up or the wait is too long."""
        if attempt >= self.max_retries:
            raise CRMUnavailable(f"{problem} (after {attempt + 1} attempts; the event is retried from the queue)")
        wait = asked_s if asked_s is not None else self.backoff_s * 2 ** attempt
        if wait > self.max_wait_s:
            raise CRMUnavailable(f"{problem} (asked to wait {wait:.0f} s, over crm.max_wait_s; the event is retried from the queue)")
        self.sleep(wait)

    def _message(self, response: httpx.Response) -> str:
        try:
            text = self.error_message(response)
        except (ValueError, KeyError, TypeError, IndexError):
            text = response.text
        text = " ".join(str(text).split())
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"
