"""The HTTP side of the LLM relabeler: a small OpenAI-compatible chat-completions client.

:class:`ChatClient` posts to ``{url}/chat/completions`` (vLLM, llama.cpp's or llama-cpp-python's
server, Ollama, a hosted API) with timeouts and retries, and raises one exception class,
:class:`LLMError`. :class:`EndpointPool` spreads calls over several servers (``--llm-url a,b``)
and skips one that is down. :func:`check_reachable` asks whether a server answers at all, for a
quick check before a run starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

_MAX_RETRY_AFTER_S = 30.0  # a server's Retry-After is honoured up to this


class LLMError(RuntimeError):
    """A chat-completions call that failed for good (after retries where they make sense)."""


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    # People paste the full endpoint as often as the base; both mean the same server.
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"LLM url must start with http:// or https://, got {url!r}")
    return url


class ChatClient:
    """A small, synchronous OpenAI-compatible chat-completions client.

    ``url`` is the API base as OpenAI clients take it, e.g. ``http://127.0.0.1:8000/v1``; requests
    go to ``{url}/chat/completions``. Timeouts and connection errors, 408, 429 and 5xx are retried
    ``max_retries`` times with exponential backoff (``backoff * 2**attempt`` seconds); other 4xx
    fail at once (a wrong model name or key does not get better by asking again).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ):
        self.url = _base_url(url)
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = max(0.0, float(backoff))
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # One pooled client: keep-alive saves a TCP handshake per call. httpx's pool is
        # thread-safe, so the relabeler's worker thread may share it.
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout), headers=headers)
        # Token counts the server reports in ``usage`` (0 where it reports none), for tokens/s.
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._usage_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _count_usage(self, response: httpx.Response) -> None:
        try:
            usage = response.json().get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        except (ValueError, TypeError, AttributeError, RecursionError):
            return
        with self._usage_lock:
            self.prompt_tokens += max(prompt, 0)
            self.completion_tokens += max(completion, 0)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, attempt: int, response: httpx.Response | None) -> float:
        wait = self.backoff * (2**attempt)
        if response is not None:
            # Absent, or an HTTP date (ValueError): the backoff alone is fine.
            with contextlib.suppress(ValueError):
                wait = max(
                    wait, min(float(response.headers.get("retry-after", "")), _MAX_RETRY_AFTER_S)
                )
        return wait

    def complete(self, messages: Sequence[dict[str, Any]], **kw: Any) -> str:
        """``choices[0].message.content`` of one chat completion.

        Keyword arguments go into the request body as they are (``temperature``,
        ``max_tokens``, ``response_format`` for servers that constrain output to a JSON schema,
        ...); ``None`` values are left out. Raises :class:`LLMError`.
        """
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        body.update({k: v for k, v in kw.items() if v is not None})
        endpoint = f"{self.url}/chat/completions"
        attempts = self.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            response = None
            try:
                response = self._http.post(endpoint, json=body)
            except httpx.TimeoutException:
                problem = f"no reply within {self.timeout:g} s"
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {_one_line(str(e)) or 'connection failed'}"
            except httpx.HTTPError as e:  # not transport-level (decoding, redirects): won't heal
                raise LLMError(
                    f"LLM call to {endpoint} failed: {type(e).__name__}: {_one_line(str(e))}"
                ) from None
            else:
                if response.status_code < 300:
                    content = _content(response, endpoint)
                    self._count_usage(response)
                    return content
                problem = f"HTTP {response.status_code}: {_one_line(response.text)}"
                # 408 and 429 say "later"; 5xx may be a restart or an overload. Other 4xx won't heal.
                if response.status_code not in (408, 429) and response.status_code < 500:
                    raise LLMError(f"LLM call to {endpoint} failed: {problem}")
            if attempt + 1 < attempts:
                time.sleep(self._wait(attempt, response))
        raise LLMError(f"LLM call to {endpoint} failed after {attempts} attempt(s): {problem}")


def _content(response: httpx.Response, endpoint: str) -> str:
    try:
        data = response.json()
        content = data["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        raise LLMError(
            f"LLM call to {endpoint}: not a chat-completions response: {_one_line(response.text)}"
        ) from None
    # null content (a refusal, a tool call) is an empty reply, which parse_reply counts.
    return content if isinstance(content, str) else ""


def check_reachable(url: str, timeout: float = 3.0) -> str | None:
    """None when a server answers ``GET {url}/models`` (any HTTP status), else a one-line reason.
    For a comma-separated list: None when any of them answers."""
    urls = split_urls(url)
    if len(urls) > 1:
        reasons = [check_reachable(u, timeout) for u in urls]
        return None if any(r is None for r in reasons) else "; ".join(r for r in reasons if r)
    try:
        base = _base_url(url)
    except ValueError as e:
        return str(e)
    try:
        httpx.get(f"{base}/models", timeout=timeout)
    except httpx.TimeoutException:
        return f"LLM server {base} did not answer within {timeout:g} s"
    except httpx.HTTPError as e:
        return f"LLM server {base} is unreachable: {type(e).__name__}: {_one_line(str(e))}"
    return None


def api_key_from_env(name: str | None) -> str | None:
    """The API key in environment variable ``name`` (None for no name). The key itself never sits
    in a config file; naming an unset variable is an error, not a silent keyless call."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ValueError(f"environment variable {name} (the LLM API key) is not set")
    return key


def split_urls(url: str) -> list[str]:
    """The endpoints of ``--llm-url``: one URL, or several separated by commas."""
    return [u.strip() for u in url.split(",") if u.strip()]


class EndpointPool:
    """Several OpenAI-compatible servers (a pool of vLLM replicas, say) behind the
    :class:`ChatClient` interface.

    Each ``complete`` starts at the next endpoint in turn, so concurrent callers spread over the
    servers. An endpoint whose call fails (after its own retries) is skipped while its circuit
    breaker is open, and the request goes on to the next one; :class:`LLMError` only when every
    endpoint failed or is paused. A server that comes back is tried again after ``cooldown``.
    """

    def __init__(self, urls: Sequence[str], model: str, api_key: str | None = None, timeout: float = 30.0,
                 max_retries: int = 3, backoff: float = 0.5, failures: int = 1, cooldown: float = 30.0):
        from oir.llm.breaker import CircuitBreaker

        if not urls:
            raise ValueError("no LLM url given")
        self.clients = [ChatClient(u, model, api_key, timeout, max_retries, backoff) for u in urls]
        self.breakers = [CircuitBreaker(failures, cooldown) for _ in urls]
        self.model, self.timeout = model, float(timeout)
        self.url = ",".join(c.url for c in self.clients)
        self.calls = [0] * len(urls)  # answered calls per endpoint
        self.failed = [0] * len(urls)
        self._turn = 0
        self._lock = threading.Lock()

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.clients)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.clients)

    def complete(self, messages: Sequence[dict[str, Any]], **kw: Any) -> str:
        with self._lock:
            start, self._turn = self._turn, self._turn + 1
        problems = []
        for i in range(len(self.clients)):
            k = (start + i) % len(self.clients)
            if not self.breakers[k].allow():
                continue
            try:
                content = self.clients[k].complete(messages, **kw)
            except LLMError as e:
                self.breakers[k].record(False)
                with self._lock:
                    self.failed[k] += 1
                problems.append(str(e))
                continue
            self.breakers[k].record(True)
            with self._lock:
                self.calls[k] += 1
            return content
        raise LLMError("; ".join(problems) or f"every LLM server of {self.url} is paused after failing")

    def down(self) -> int:
        """Endpoints whose breaker is open (failing recently)."""
        return sum(b.is_open for b in self.breakers)

    def close(self) -> None:
        for c in self.clients:
            c.close()


def make_client(url: str, model: str, api_key: str | None = None, timeout: float = 30.0,
                max_retries: int = 3, backoff: float = 0.5) -> ChatClient | EndpointPool:
    """A :class:`ChatClient` for one URL, an :class:`EndpointPool` for a comma-separated list."""
    urls = split_urls(url)
    if len(urls) > 1:
        return EndpointPool(urls, model, api_key, timeout, max_retries, backoff)
    return ChatClient(url, model, api_key, timeout, max_retries, backoff)
