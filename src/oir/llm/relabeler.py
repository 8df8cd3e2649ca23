"""The LLM relabeler: the client, prompt, reply parsing, cache and circuit breaker together.

:class:`LLMRelabeler` sits behind the :class:`~oir.relabel.Relabeler` interface; its
``propose_batch`` never raises because of the server or the model. :func:`make_llm_relabeler`
builds one from CLI-style settings.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from oir import worlds
from oir.buffer import achievements_asked
from oir.llm.breaker import CircuitBreaker
from oir.llm.cache import ReplyCache
from oir.llm.client import ChatClient, EndpointPool, LLMError, api_key_from_env, make_client
from oir.llm.prompt import DEFAULT_PROMPT, load_prompt, render_prompt
from oir.llm.reply import for_segments, parse_reply
from oir.llm.signature import event_signature, rebind
from oir.llm.templates import TemplateLibrary, lift, reached
from oir.narrate import Segment, narrate
from oir.relabel import FLAW_REASONS, Flawed, parse_task, verify
from oir.worlds import World


class LLMRelabeler:
    """Hindsight instructions from a chat model, behind the :class:`~oir.relabel.Relabeler` API.

    ``propose_batch`` narrates each segment, serves cache hits (the same narration) and signature
    hits (another segment's reply with the same event signature, re-bound to this one:
    :mod:`oir.llm.signature`), sends the misses (one per narration and per signature) in requests
    of up to ``batch_size`` segments, parses each reply and caches the segments it answered. A failed call, or a call skipped while the circuit breaker is
    open, leaves its segments with no proposals (``[]``), counted in ``llm_segments_skipped``.
    """

    name = "llm"

    def __init__(
        self,
        client: ChatClient | EndpointPool,
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
        concurrency: int = 1,
        signatures: bool = True,
        max_signatures: int = 50_000,
        templates: TemplateLibrary | None = None,
        ask_in_background: bool = False,
        duty: float = 1.0,
        warm_up: bool = False,
        world: World | str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        load_prompt(prompt)  # a missing or broken prompt file fails here, not mid-training
        self.world = worlds.world_of(world)  # the game its segments come from: its counters in the prompt
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
        # Requests in flight at once, for servers that batch them (vLLM, llama.cpp with slots).
        self.concurrency = max(1, int(concurrency))
        # Replies by event signature (oir.llm.signature), re-bound to each later segment that has it.
        self.signatures, self.max_signatures = signatures, max_signatures
        self._by_sig: dict[str, tuple[Segment, list[Any]]] = {}
        self._lock = threading.Lock()
        self._calls = self._hits = self._errors = self._skipped = 0
        self._sig_hits = self._segments = 0
        self._latency_total = 0.0
        self._ok_calls = 0
        # Template mode: the model writes relabels (the relabel prompt) for segments that no
        # template covers, each one verified on its segment is lifted into a template
        # (oir.llm.templates), and every segment is relabeled by instantiating the library's templates.
        self.library = templates
        self._lift: Counter = Counter()  # template mode: the model's relabels proposed, verified, flawed by reason
        # Template mode, in training: the model is asked in a thread of its own, so a request of
        # 30 s never holds up the templates' relabels of the segments that keep arriving.
        # Otherwise (oir relabel, --relabeling.synchronous) each batch waits for its requests.
        # signature -> (achievements no template names there, arrival, segment), waiting to be asked
        self._queued: dict[str, tuple[int, int, Segment]] = {}
        self._seq = 0
        self._asks_dropped = 0
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._asker = None
        self._asked: dict[str, None] = {}  # signatures already shown to the model for templates (oldest first)
        self._templated = 0  # segments with at least one relabel from a template
        # The largest share of wall time the asking thread keeps the model busy. A local server
        # shares this machine's cores with training: busy, it cost PQN 40% of its steps/s here.
        # Requests go back to back until the library holds a template: the first templates are
        # worth the most (in a 2M-step PQN run, one request's 6 took the share of segments
        # relabeled through the LLM from 0 to about 90%; the next two requests added 1), and capped
        # from the start the first request finished so late that a third of the run had no
        # template. From then on the cap counts the model's busy time since the start, those first
        # requests and the warm-up included: counted from zero at the first template, the next
        # request went at once, and the model was busy 44% of a 2M-step run at duty 0.25.
        if not 0.0 < duty <= 1.0:
            raise ValueError(f"the LLM duty cycle must be in (0, 1], got {duty}")
        self.duty, self._busy_all, self._began = float(duty), 0.0, time.monotonic()
        self._capped = templates is not None and len(templates) > 0
        self.warm_up = warm_up  # the asking thread first sends the prompt alone (a server with a prompt cache)
        if templates is not None and ask_in_background:  # last: the thread reads the state above
            self._asker = threading.Thread(target=self._ask_loop, name="oir-llm-templates", daemon=True)
            self._asker.start()

    def describe(self) -> str:
        """One line for logs: which relabeler, model, server and prompt version ran."""
        where = "local llama.cpp server " if self.server is not None else ""
        fmt = f", response_format {self.response_format['type']}" if self.response_format else ""
        if self.library is not None:
            fmt += ", templates lifted from its verified relabels"
        if self.response_format and "schema" in self.response_format:
            fmt += " with schema"
        if self._asker is not None and self.duty < 1.0:
            fmt += f", busy at most {self.duty:.0%} of the time"
        temp = "" if self.temperature is None else f", temperature {self.temperature:g}"
        return (
            f"llm (model {self.client.model} at {where}{self.client.url}, "
            f"prompt {self.prompt_version}{fmt}{temp})"
        )

    def _complete(self, messages: list[dict[str, str]], n_segments: int,
                  response_format: dict[str, Any] | None = None) -> str | None:
        """One request's reply text, or None if the call failed (counted, and told to the breaker)."""
        n_tokens = None if self.max_tokens_per_segment is None else self.max_tokens_per_segment * n_segments
        start = time.perf_counter()
        try:
            reply = self.client.complete(
                messages,
                temperature=self.temperature,
                max_tokens=n_tokens,
                response_format=response_format,
            )
        except LLMError:
            self._report_server_death()
            self.breaker.record(False)
            with self._lock:
                self._calls += 1
                self._errors += 1
            return None
        self.breaker.record(True)
        with self._lock:
            self._calls += 1
            self._ok_calls += 1
            self._latency_total += time.perf_counter() - start
        return reply

    def _call(self, narrations: list[str]) -> list[list[Any]] | None:
        """Parsed proposals for one request, or None if the call failed."""
        reply = self._complete(render_prompt(narrations, self.prompt_version, self.world), len(narrations),
                               for_segments(self.response_format, len(narrations)))
        if reply is None:
            return None
        try:
            return parse_reply(reply, len(narrations), self.max_proposals)
        except Exception:  # a parser bug must not end a training run; the reply counts as malformed
            return [[Flawed("malformed-json")] for _ in narrations]

    def _call_lifted(self, segments: list[Segment]) -> list[Any] | None:
        """Template objects lifted from the model's relabels of ``segments`` that verify there."""
        got = self._call([narrate(s) for s in segments])
        if got is None:
            return None
        out = []
        for seg, props in zip(segments, got, strict=True):
            kept, flawed = verify(seg, props)
            with self._lock:
                self._lift.update({"proposed": len(props), "verified": len(kept)})
                self._lift.update({f"flawed_{r}": n for r, n in flawed.items()})
            out += [lift(r.text, r.spec.to_json()) for r in kept]
        return out

    def _propose_templates(self, segments: list[Segment]) -> list[list[Any]]:
        """Relabels from templates. The model is asked, once per event signature, about segments
        where something happened that no template's relabel there names: covering a segment with
        one relabel is not enough (a library of "collect a sapling" would then cover nearly every
        segment, and the model would never see the table and the pickaxe)."""
        reach = reached(segments)
        out = self.library.propose(segments, reach)
        unnamed = [_unstated(reach[k], props, self.world) for k, props in enumerate(out)]
        short = [k for k, n in enumerate(unnamed) if n]
        ask: dict[str, int] = {}  # new signature -> a segment that has it
        for k in short:
            sig = event_signature(segments[k])
            if sig not in self._asked and sig not in ask and sig not in self._queued:
                ask[sig] = k
        if self._asker is not None:  # the asking thread takes them; these segments get what there is now
            with self._lock:
                for sig, k in ask.items():
                    self._seq += 1
                    self._queued[sig] = (unnamed[k], self._seq, segments[k])
                    if len(self._queued) > self.max_queued:  # the least telling waits no longer
                        del self._queued[min(self._queued, key=self._queued.__getitem__)]
                        self._asks_dropped += 1
                self._wake.notify()
            ask = {}
        sigs = list(ask)
        for lo in range(0, len(sigs), self.batch_size):
            self._ask([(s, segments[ask[s]]) for s in sigs[lo:lo + self.batch_size]])
        if sigs and short:
            for k, props in zip(short, self.library.propose([segments[k] for k in short], reach[short]), strict=True):
                out[k] = props
        with self._lock:
            self._segments += len(segments)
            self._templated += sum(1 for props in out if props)
        return out

    max_queued = 256  # signatures waiting for the model; past this the least telling one is dropped (asked again when seen again)

    def _ask(self, items: list[tuple[str, Segment]]) -> None:
        """One request about these (signature, segment) pairs; what it yields joins the library."""
        got = self._call_lifted([seg for _, seg in items]) if self.breaker.allow() else None
        if got is None:
            return
        with self._lock:
            self._asked.update(dict.fromkeys(sig for sig, _ in items))
            while len(self._asked) > self.max_signatures:  # the oldest may be asked about again
                self._asked.pop(next(iter(self._asked)))
        for obj in got:
            self.library.add(obj)

    def _warm_up(self) -> None:
        """One request of a single token on the prompt: the server then holds the prompt's shared
        prefix (instructions and examples, about 900 tokens) in its cache, computed while training
        compiles, and the first real request costs only its segments."""
        began = time.monotonic()
        try:
            self.client.complete(render_prompt(["(nothing yet)"], self.prompt_version, self.world), max_tokens=1, temperature=self.temperature)
        except LLMError:
            pass  # best effort: the first request then pays for the prompt itself
        except Exception as e:
            if not self._closing:  # closing shuts the connections under it: no news
                print(f"oir: warning: warming the LLM server's prompt cache failed ({type(e).__name__}: {e})",
                      file=sys.stderr, flush=True)
        self._count_busy(began)

    def _count_busy(self, began: float) -> None:
        """Add the time since ``began`` to the model's busy time; the duty cap holds from the
        first time the library holds a template."""
        now = time.monotonic()
        with self._lock:
            self._busy_all += now - began
            self._capped = self._capped or (self.library is not None and len(self.library) > 0)

    def _ask_loop(self) -> None:
        if self.warm_up:
            self._warm_up()
        while True:
            with self._lock:
                # Under the duty cycle: the next request waits until the model's busy time is at
                # most ``duty`` of the time since the start (no wait before the first template).
                rest = self._began + self._busy_all / self.duty - time.monotonic() if self._capped else 0.0
                if rest > 0:
                    self._wake.wait_for(lambda: self._closing, timeout=rest)
                self._wake.wait_for(lambda: self._queued or self._closing)
                if self._closing:
                    return
                # Most that no template names first, then the newest (what the agent does now).
                best = sorted(self._queued, key=self._queued.__getitem__, reverse=True)[:self.batch_size]
                items = [(sig, self._queued.pop(sig)[2]) for sig in best]
            began = time.monotonic()
            try:
                self._ask(items)
            except Exception as e:  # a bug here must not silently end template relabeling
                if not self._closing:  # closing ends a request in flight: no news
                    print(f"oir: warning: asking the LLM for templates failed ({type(e).__name__}: {e})",
                          file=sys.stderr, flush=True)
            self._count_busy(began)

    def propose_batch(self, segments: list[Segment]) -> list[list[Any]]:
        if self.library is not None:
            return self._propose_templates(segments)
        texts = [narrate(s) for s in segments]
        sigs = [event_signature(s) for s in segments] if self.signatures else [None] * len(segments)
        model = self.client.model
        results: dict[str, list[Any]] = {}
        misses: dict[str, Segment] = {}  # distinct narrations to ask for, in first-seen order
        asking: dict[str, str] = {}  # signature -> the narration asked for it in this batch
        later: list[tuple[str, Segment, str]] = []  # same signature as one being asked: bound after
        hits = sig_hits = 0
        for text, seg, sig in zip(texts, segments, sigs, strict=True):
            if text in results or text in misses:
                continue
            cached = (
                self.cache.get(self.prompt_version, model, text) if self.cache is not None else None
            )
            if cached is not None:
                results[text] = cached
                hits += 1
            elif sig is not None and sig in self._by_sig:
                source, proposals = self._by_sig[sig]
                results[text] = rebind(proposals, source, seg)
                sig_hits += 1
            elif sig is not None and sig in asking:
                later.append((text, seg, sig))
            else:
                misses[text] = seg
                if sig is not None:
                    asking[sig] = text
        ask = list(misses)
        skipped: set[str] = set()
        chunks = [ask[lo : lo + self.batch_size] for lo in range(0, len(ask), self.batch_size)]

        def call(chunk: list[str]) -> list[list[Any]] | None:
            return self._call(chunk) if self.breaker.allow() else None

        if self.concurrency > 1 and len(chunks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.concurrency, len(chunks))) as pool:
                replies = list(pool.map(call, chunks))
        else:
            replies = [call(chunk) for chunk in chunks]
        sig_of = {text: sig for sig, text in asking.items()}
        replied: dict[str, tuple[Segment, list[Any]]] = {}  # this batch's replies by signature, flawed ones too
        for chunk, parsed in zip(chunks, replies, strict=True):
            if parsed is None:
                skipped.update(chunk)
                continue
            for text, proposals in zip(chunk, parsed, strict=True):
                results[text] = proposals
                if text in sig_of:
                    replied[sig_of[text]] = (misses[text], proposals)
                # Reply-level failures (malformed, missing) are not cached: asking again may help.
                if any(isinstance(p, Flawed) for p in proposals):
                    continue
                if self.cache is not None:
                    self.cache.put(self.prompt_version, model, text, proposals)
                if text in sig_of:
                    self._remember(sig_of[text], misses[text], proposals)
        for text, seg, sig in later:
            if sig in replied:
                source, proposals = replied[sig]
                results[text] = rebind(proposals, source, seg)
                sig_hits += 1
            else:
                skipped.add(text)
        with self._lock:
            self._hits += hits
            self._sig_hits += sig_hits
            self._segments += len(texts)
            self._skipped += sum(1 for t in texts if t in skipped)
        # Fresh lists per segment: two segments with one narration must not share a list.
        return [list(results.get(t, [])) for t in texts]

    def _remember(self, sig: str, segment: Segment, proposals: list[Any]) -> None:
        with self._lock:
            self._by_sig[sig] = (segment, proposals)
            if len(self._by_sig) > self.max_signatures:  # the oldest signature goes
                self._by_sig.pop(next(iter(self._by_sig)))

    def _report_server_death(self) -> None:
        death = self.server.death() if self.server is not None else None
        if death:
            # One line, once; the circuit breaker then keeps the run going without this server.
            print(f"oir: warning: {death}; training goes on with the instructions it has", file=sys.stderr)

    def close(self) -> None:
        """Release the HTTP connections and the cache file, and stop an owned server."""
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        if self._asker is not None:
            self._asker.join(timeout=1.0)  # a request in flight ends with the connections below
        self.client.close()
        if self.cache is not None:
            self.cache.close()
        if self.server is not None:
            self.server.stop()

    def stats(self) -> dict[str, float]:
        pool = {}
        if isinstance(self.client, EndpointPool):
            pool = {"llm_endpoints_down": float(self.client.down()),
                    **{f"llm_endpoint{i}_calls": float(n) for i, n in enumerate(self.client.calls)}}
        with self._lock:
            return {
                **pool,
                "llm_calls": float(self._calls),
                "llm_cache_hits": float(self._hits),
                "llm_signature_hits": float(self._sig_hits),
                # of the segments sent to the relabeler, the share answered from another segment's
                # reply with the same event signature (no call)
                "llm_signature_hit_rate": self._sig_hits / self._segments if self._segments else 0.0,
                "llm_signatures": float(len(self._by_sig)),
                "llm_errors": float(self._errors),
                "llm_latency_s": self._latency_total / self._ok_calls if self._ok_calls else 0.0,
                "llm_segments_skipped": float(self._skipped),
                "llm_outage": 1.0 if self.breaker.is_open else 0.0,
                "llm_prompt_tokens": float(self.client.prompt_tokens),
                "llm_completion_tokens": float(self.client.completion_tokens),
                **self._template_stats(),
            }

    def _template_stats(self) -> dict[str, float]:
        if self.library is None:
            return {}
        lifted = {
            "llm_lift_proposed": float(self._lift["proposed"]), "llm_lift_verified": float(self._lift["verified"]),
            **{f"llm_lift_flawed_{r}": float(self._lift[f"flawed_{r}"]) for r in FLAW_REASONS}}
        asking = {} if self._asker is None else {
            "llm_template_asks_queued": float(len(self._queued)),
            "llm_template_asks_dropped": float(self._asks_dropped),
            # the share of the time since asking began that the model spent on template requests
            "llm_busy_frac": self._busy_all / max(time.monotonic() - self._began, 1e-9)}
        return {**self.library.stats(), **lifted, **asking, "llm_segments_templated": float(self._templated),
                # of the segments handed to the relabeler, the share relabeled through templates
                "llm_template_share": self._templated / self._segments if self._segments else 0.0}


def _unstated(reach, props: list[Any], world: World) -> int:
    """How many achievements happened (``reach``: the segment's reached counters) that no
    proposal asks for (:func:`oir.buffer.achievements_asked`: a placement asks for its block's
    placing). ``props`` are the library's instantiations, whose tasks parse."""
    named = {i for p in props for i in achievements_asked(parse_task(p["task"], world.name)).tolist()}
    return sum(reach[world.counter_index[a]] > 0 and i not in named for i, a in enumerate(world.achievements))


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
    client = make_client(url, model, api_key_from_env(api_key_env), timeout, max_retries, backoff)
    cache = ReplyCache(cache_path) if use_cache else None
    return LLMRelabeler(client, prompt=prompt, batch_size=batch_size, cache=cache, **relabeler_kw)
