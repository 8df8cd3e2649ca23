"""The LLM relabeler: hindsight instructions from any OpenAI-compatible chat-completions server.

The pieces, each usable on its own:

* :class:`ChatClient` posts to ``{url}/chat/completions`` (vLLM, llama.cpp's or
  llama-cpp-python's server, Ollama, a hosted API) with timeouts and retries, and raises one
  exception class, :class:`LLMError`.
* :func:`render_prompt` fills a versioned prompt file (``oir/prompts/<version>.txt``) with the
  counter vocabulary and a batch of numbered narrations.
* :func:`parse_reply` turns a model's reply into one proposal list per segment. It only ever
  calls ``json.loads``: nothing the model says is executed.
* :class:`ReplyCache` keeps each segment's parsed proposals in SQLite, keyed by prompt version,
  model and narration text, so a repeated segment costs no call.
* :class:`LLMRelabeler` ties them together behind the :class:`~oir.relabel.Relabeler` interface,
  with a circuit breaker so a dead server costs one quick check per batch, not a timeout per
  segment. Its ``propose_batch`` never raises because of the server or the model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from oir.events import COUNTERS
from oir.narrate import Segment, narrate
from oir.relabel import Flawed

DEFAULT_CACHE_PATH = Path("~/.cache/oir/llm_cache.sqlite")
DEFAULT_PROMPT = "relabel_v1"
# A reply longer than this is not a batch of instructions (a model stuck in a loop, say);
# it is refused before any parsing so its cost stays bounded.
MAX_REPLY_CHARS = 200_000
# How many "{" / "[" starts parse_reply tries when it hunts for JSON inside prose: each try
# may scan the rest of the text, so an unbounded hunt is quadratic on adversarial replies.
_MAX_JSON_STARTS = 64
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


# ---------------------------------------------------------------------------------------------
# Client


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
    """None when a server answers ``GET {url}/models`` (any HTTP status), else a one-line reason."""
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


# ---------------------------------------------------------------------------------------------
# Prompt


def _vocabulary() -> str:
    kinds = [
        ("achievement", "events, counted each time they happen"),
        ("placement", "events: the first block put down with the second among its 8 neighbours"),
        ("inventory", "levels: items held now"),
        ("vital", "levels: current vitals"),
    ]
    out = []
    for kind, what in kinds:
        names = ", ".join(c.name for c in COUNTERS if c.kind == kind)
        out.append(
            textwrap.fill(
                f"{kind} {what}: {names}", 96, initial_indent="  ", subsequent_indent="    "
            )
        )
    return "\n".join(out)


def _phrases() -> str:
    """The narration's event phrases and their counters, for prompts that spell the mapping out
    (a small model copes far better with a lookup table than with inferring names)."""
    from oir.narrate import PHRASES

    return "\n".join(f"  {phrase} -> {name}" for name, phrase in PHRASES.items())


@functools.lru_cache(maxsize=16)
def load_prompt(version: str = DEFAULT_PROMPT) -> tuple[str, str]:
    """The (system, user) templates of ``oir/prompts/<version>.txt``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", version):
        raise ValueError(f"prompt version must be a file stem like 'relabel_v1', got {version!r}")
    try:
        raw = (resources.files("oir") / "prompts" / f"{version}.txt").read_text("utf-8")
    except FileNotFoundError:
        raise ValueError(f"no prompt file oir/prompts/{version}.txt") from None
    match = re.fullmatch(r"=== system ===\n(.*)\n=== user ===\n(.*)", raw, re.S)
    if match is None:
        raise ValueError(
            f"prompt {version}: expected '=== system ===' then '=== user ===' sections"
        )
    return match.group(1).strip(), match.group(2).strip()


def render_prompt(narrations: Sequence[str], version: str = DEFAULT_PROMPT) -> list[dict[str, str]]:
    """Chat messages asking for proposals for the narrations, numbered 1..n."""
    system, user = load_prompt(version)
    blocks = "\n\n".join(f"[segment {i}]\n{text}" for i, text in enumerate(narrations, 1))
    return [
        {
            "role": "system",
            "content": system.replace("<<COUNTERS>>", _vocabulary()).replace("<<PHRASES>>", _phrases()),
        },
        {
            "role": "user",
            "content": user.replace("<<N>>", str(len(narrations))).replace("<<SEGMENTS>>", blocks),
        },
    ]


# ---------------------------------------------------------------------------------------------
# Constrained output

JSON_MODES = ("off", "object", "schema")


def reply_schema(max_proposals: int = 8) -> dict[str, Any]:
    """JSON schema of a reply: segments with proposals whose counters are the vocabulary's names.

    Grammar-constrained decoding with it makes malformed JSON and unknown counters impossible;
    whether a spec *holds* is still for verification to say.
    """
    clause = {
        "type": "object",
        "properties": {
            "counter": {"enum": [c.name for c in COUNTERS]},
            "at_least": {"type": "integer"},
        },
        "required": ["counter", "at_least"],
        "additionalProperties": False,
    }
    task = {
        "type": "object",
        "properties": {
            "all": {"type": "array", "items": clause, "minItems": 1, "maxItems": 4},
            "ordered": {"type": "boolean"},
            "none": {"type": "array", "items": clause, "maxItems": 2},
            "within": {"type": "integer"},
        },
        "required": ["all"],
        "additionalProperties": False,
    }
    proposal = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 160}, "task": task},
        "required": ["text", "task"],
        "additionalProperties": False,
    }
    segment = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            # At least one: under a grammar a small model takes the shortest way out, an empty
            # list (saved segments always have an event). At most a few: it may otherwise list
            # proposals until max_tokens.
            "proposals": {"type": "array", "items": proposal, "minItems": 1, "maxItems": max_proposals},
        },
        "required": ["id", "proposals"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"segments": {"type": "array", "items": segment}},
        "required": ["segments"],
        "additionalProperties": False,
    }


def response_format(mode: str, max_proposals: int = 8) -> dict[str, Any] | None:
    """The request's ``response_format`` for a JSON mode.

    ``off``: none. ``object``: ``{"type": "json_object"}``, OpenAI's JSON mode (llama.cpp's and
    llama-cpp-python's servers, vLLM, Ollama). ``schema``: :func:`reply_schema` in the form
    llama-cpp-python's server takes, ``{"type": "json_object", "schema": ...}``, which it
    compiles into a grammar.
    """
    if mode == "off":
        return None
    if mode == "object":
        return {"type": "json_object"}
    if mode == "schema":
        return {"type": "json_object", "schema": reply_schema(max_proposals)}
    raise ValueError(f"unknown LLM JSON mode {mode!r} (choose from {', '.join(JSON_MODES)})")


# ---------------------------------------------------------------------------------------------
# Reply parsing

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.S)
_OPENER = re.compile(r"[\[{]")


def _json_values(text: str) -> list[Any]:
    """JSON values found in ``text``: in fenced blocks, then in the whole text. A chunk that is
    not JSON as a whole is scanned for values starting at its first few "{" or "[", outermost
    first, so prose around one object still yields that object."""
    found: list[Any] = []
    decoder = json.JSONDecoder()
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        chunk = chunk.strip()
        try:
            found.append(json.loads(chunk))
            continue
        except (ValueError, RecursionError):
            pass
        pos = 0
        for _ in range(_MAX_JSON_STARTS):
            match = _OPENER.search(chunk, pos)
            if match is None:
                break
            try:
                value, end = decoder.raw_decode(chunk, match.start())
            except (ValueError, RecursionError):
                pos = match.start() + 1
                continue
            found.append(value)
            pos = end  # values nested inside this one are not separate answers
    return found


def _segment_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:segment\s*)?#?(\d{1,6})\s*", value, re.I)
        return int(m.group(1)) if m else None
    return None


def _proposal_list(value: Any) -> list[Any]:
    if isinstance(value, dict) and "proposals" in value:
        value = value["proposals"]
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict) and "task" in value:
        return [value]  # one proposal not wrapped in a list
    return [Flawed("malformed-json")]


def _from_items(items: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for pos, item in enumerate(items, 1):
        if not isinstance(item, dict):
            continue  # that segment ends up missing, hence Flawed("empty")
        # The model's own numbering when it gives one; its list order when it does not.
        i = _segment_id(item.get("id", item.get("segment", pos)))
        if i is not None:
            out.setdefault(i, []).extend(_proposal_list(item))
    return out


def _looks_like_segments(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, dict) and "proposals" in v for v in value)


def _by_segment(value: Any, n: int) -> tuple[int, dict[int, list[Any]]] | None:
    """(rank, segment number -> proposals) for a value of a known shape, else None.

    Lower ranks are surer readings: the documented object beats a bare list, which in prose
    may be a stray "[1]".
    """
    if isinstance(value, dict) and "segments" in value:
        segments = value["segments"]
        if isinstance(segments, list):
            return 0, _from_items(segments)
        if isinstance(segments, dict):  # {"segments": {"1": [...], "2": [...]}}
            out: dict[int, list[Any]] = {}
            for k, v in segments.items():
                i = _segment_id(k)
                if i is not None:
                    out.setdefault(i, []).extend(_proposal_list(v))
            return 0, out
        return None
    if isinstance(value, list) and _looks_like_segments(value):
        return 1, _from_items(value)
    if n == 1 and isinstance(value, dict) and "proposals" in value:
        return 2, {1: _proposal_list(value)}
    if n == 1 and isinstance(value, list):
        return 3, {1: list(value)}  # the bare list of proposals a one-segment request may get
    return None


def parse_reply(text: str, n_segments: int, max_proposals: int = 32) -> list[list[Any]]:
    """One proposal list per segment from a model's reply to a batch of ``n_segments``.

    Tolerates markdown fences and prose around the JSON. Accepts ``{"segments": [{"id": i,
    "proposals": [...]}, ...]}`` and, for one segment, a bare list of proposals. Proposals are
    returned as the model wrote them (``verify`` judges them); known failures become
    :class:`~oir.relabel.Flawed`: an empty reply gives ``Flawed("empty")`` for every segment, an
    unparseable one ``Flawed("malformed-json")``, a segment missing from the reply
    ``Flawed("empty")``. At most ``max_proposals`` are kept per segment, markers included.
    Never raises.
    """
    keep = max(max_proposals, 0)
    if not isinstance(text, str) or not text.strip():
        return [[Flawed("empty")][:keep] for _ in range(n_segments)]
    readings = []
    if len(text) <= MAX_REPLY_CHARS:
        readings = [
            r for r in (_by_segment(v, n_segments) for v in _json_values(text)) if r is not None
        ]
    if not readings:
        return [[Flawed("malformed-json")][:keep] for _ in range(n_segments)]
    by_segment = min(readings, key=lambda r: r[0])[1]  # the surest reading, the first of equals
    return [by_segment.get(i, [Flawed("empty")])[:keep] for i in range(1, n_segments + 1)]


# ---------------------------------------------------------------------------------------------
# Cache


class ReplyCache:
    """Parsed proposals per (prompt version, model, narration) in a SQLite file.

    Safe to share between threads (one connection behind a lock) and between processes (SQLite's
    own file locking). A damaged or unwritable cache degrades to misses, never to a crash.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(os.path.expanduser(path if path is not None else DEFAULT_CACHE_PATH))
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # check_same_thread=False: the relabeler may run in a worker thread; the lock serializes.
        self._db = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                "key TEXT PRIMARY KEY, prompt TEXT, model TEXT, proposals TEXT, created REAL)"
            )

    @staticmethod
    def key(prompt_version: str, model: str, narration: str) -> str:
        # NUL separators: no (prompt, model, text) triple can collide with another by shifting
        # characters across the boundaries.
        return hashlib.sha256(f"{prompt_version}\0{model}\0{narration}".encode()).hexdigest()

    def get(self, prompt_version: str, model: str, narration: str) -> list[Any] | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT proposals FROM replies WHERE key = ?",
                    (self.key(prompt_version, model, narration),),
                ).fetchone()
            value = json.loads(row[0]) if row is not None else None
        except (sqlite3.Error, ValueError, RecursionError):
            return None
        return value if isinstance(value, list) else None

    def put(self, prompt_version: str, model: str, narration: str, proposals: list[Any]) -> bool:
        """Store a segment's proposals; False if they could not be stored (nothing raised)."""
        try:
            blob = json.dumps(proposals)
            with self._lock, self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                    (
                        self.key(prompt_version, model, narration),
                        prompt_version,
                        model,
                        blob,
                        time.time(),
                    ),
                )
        except (sqlite3.Error, ValueError, TypeError, RecursionError):
            return False
        return True

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ---------------------------------------------------------------------------------------------
# Circuit breaker


class CircuitBreaker:
    """Stops calling a server that keeps failing.

    Closed: calls go through. After ``failures`` consecutive failed calls it opens: no calls
    for ``cooldown`` seconds. Then it is half-open: one trial call decides; success closes it,
    failure opens it for another ``cooldown``.
    """

    def __init__(
        self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.failures = max(1, int(failures))
        self.cooldown = float(cooldown)
        self._clock = clock
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False  # a half-open trial call is in flight
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while calls are refused or only a trial is allowed (an outage is suspected)."""
        return self._open_until is not None

    def allow(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self._trial or self._clock() < self._open_until:
                return False
            self._trial = True
            return True

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._consecutive, self._open_until, self._trial = 0, None, False
                return
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                self._open_until = self._clock() + self.cooldown
                self._trial = False


# ---------------------------------------------------------------------------------------------
# Relabeler


class LLMRelabeler:
    """Hindsight instructions from a chat model, behind the :class:`~oir.relabel.Relabeler` API.

    ``propose_batch`` narrates each segment, serves cache hits, sends the misses (identical
    narrations once) in requests of up to ``batch_size`` segments, parses each reply and caches
    the segments it answered. A failed call, or a call skipped while the circuit breaker is
    open, leaves its segments with no proposals (``[]``), counted in ``llm_segments_skipped``.
    """

    name = "llm"

    def __init__(
        self,
        client: ChatClient,
        prompt: str = DEFAULT_PROMPT,
        batch_size: int = 8,
        cache: ReplyCache | None = None,
        *,
        max_proposals: int = 16,
        temperature: float | None = None,
        max_tokens_per_segment: int | None = 512,
        response_format: dict[str, Any] | None = None,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
        server: Any | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        load_prompt(prompt)  # a missing or broken prompt file fails here, not mid-training
        self.client = client
        self.prompt_version = prompt
        self.batch_size = int(batch_size)
        self.cache = cache
        self.max_proposals = max_proposals
        self.temperature = temperature
        # A small model can loop until the context is full; a cap bounds the cost of that.
        self.max_tokens_per_segment = max_tokens_per_segment
        self.response_format = response_format
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown)
        # A server this relabeler owns (oir.llm_local.LocalServer): stopped by close(), and its
        # death reported once. Requests still go through the client like any other server's.
        self.server = server
        self._lock = threading.Lock()
        self._calls = self._hits = self._errors = self._skipped = 0
        self._latency_total = 0.0
        self._ok_calls = 0

    def describe(self) -> str:
        """One line for logs: which relabeler, model, server and prompt version ran."""
        where = "local llama.cpp server " if self.server is not None else ""
        fmt = f", response_format {self.response_format['type']}" if self.response_format else ""
        if self.response_format and "schema" in self.response_format:
            fmt += " with schema"
        return (
            f"llm (model {self.client.model} at {where}{self.client.url}, "
            f"prompt {self.prompt_version}{fmt})"
        )

    def _call(self, narrations: list[str]) -> list[list[Any]] | None:
        """Parsed proposals for one request, or None if the call failed."""
        n_tokens = (
            None
            if self.max_tokens_per_segment is None
            else self.max_tokens_per_segment * len(narrations)
        )
        messages = render_prompt(narrations, self.prompt_version)
        start = time.perf_counter()
        try:
            reply = self.client.complete(
                messages,
                temperature=self.temperature,
                max_tokens=n_tokens,
                response_format=self.response_format,
            )
        except LLMError:
            self._report_server_death()
            self.breaker.record(False)
            with self._lock:
                self._calls += 1
                self._errors += 1
            return None
        elapsed = time.perf_counter() - start
        self.breaker.record(True)
        with self._lock:
            self._calls += 1
            self._ok_calls += 1
            self._latency_total += elapsed
        try:
            return parse_reply(reply, len(narrations), self.max_proposals)
        except Exception:  # a parser bug must not end a training run; the reply counts as malformed
            return [[Flawed("malformed-json")] for _ in narrations]

    def propose_batch(self, segments: list[Segment]) -> list[list[Any]]:
        texts = [narrate(s) for s in segments]
        model = self.client.model
        results: dict[str, list[Any]] = {}
        misses: dict[str, None] = {}  # distinct narrations to ask for, in first-seen order
        hits = 0
        for text in texts:
            if text in results or text in misses:
                continue
            cached = (
                self.cache.get(self.prompt_version, model, text) if self.cache is not None else None
            )
            if cached is not None:
                results[text] = cached
                hits += 1
            else:
                misses[text] = None
        ask = list(misses)
        skipped: set[str] = set()
        for lo in range(0, len(ask), self.batch_size):
            chunk = ask[lo : lo + self.batch_size]
            parsed = self._call(chunk) if self.breaker.allow() else None
            if parsed is None:
                skipped.update(chunk)
                continue
            for text, proposals in zip(chunk, parsed, strict=True):
                results[text] = proposals
                # Reply-level failures (malformed, missing) are not cached: asking again may help.
                if self.cache is not None and not any(isinstance(p, Flawed) for p in proposals):
                    self.cache.put(self.prompt_version, model, text, proposals)
        with self._lock:
            self._hits += hits
            self._skipped += sum(1 for t in texts if t in skipped)
        # Fresh lists per segment: two segments with one narration must not share a list.
        return [list(results.get(t, [])) for t in texts]

    def _report_server_death(self) -> None:
        death = self.server.death() if self.server is not None else None
        if death:
            # One line, once; the circuit breaker then keeps the run going without this server.
            print(f"oir: warning: {death}; training goes on with the instructions it has", file=sys.stderr)

    def close(self) -> None:
        """Release the HTTP connections and the cache file, and stop an owned server."""
        self.client.close()
        if self.cache is not None:
            self.cache.close()
        if self.server is not None:
            self.server.stop()

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "llm_calls": float(self._calls),
                "llm_cache_hits": float(self._hits),
                "llm_errors": float(self._errors),
                "llm_latency_s": self._latency_total / self._ok_calls if self._ok_calls else 0.0,
                "llm_segments_skipped": float(self._skipped),
                "llm_outage": 1.0 if self.breaker.is_open else 0.0,
                "llm_prompt_tokens": float(self.client.prompt_tokens),
                "llm_completion_tokens": float(self.client.completion_tokens),
            }


def make_llm_relabeler(
    url: str,
    model: str,
    api_key_env: str | None = None,
    *,
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 8,
    cache_path: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff: float = 0.5,
    **relabeler_kw: Any,
) -> LLMRelabeler:
    """An :class:`LLMRelabeler` from CLI-style settings.

    ``api_key_env`` names the environment variable holding the API key (the key itself never
    sits in a config file); naming an unset variable is an error, not a silent keyless call.
    The cache lives at ``cache_path`` (default ``~/.cache/oir/llm_cache.sqlite``) unless
    ``use_cache`` is false.
    """
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(f"environment variable {api_key_env} (the LLM API key) is not set")
    client = ChatClient(
        url, model, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff
    )
    cache = ReplyCache(cache_path) if use_cache else None
    return LLMRelabeler(client, prompt=prompt, batch_size=batch_size, cache=cache, **relabeler_kw)
