"""The LLM relabeler: hindsight instructions from any OpenAI-compatible chat-completions server.

The pieces, one module each and each usable on its own:

* :mod:`oir.llm.client`: :class:`ChatClient` posts to ``{url}/chat/completions`` (vLLM,
  llama.cpp's or llama-cpp-python's server, Ollama, a hosted API) with timeouts and retries,
  and raises one exception class, :class:`LLMError`; :class:`EndpointPool` spreads calls over
  a comma-separated list of servers and skips one that is down; :func:`check_reachable` is the
  quick check before a run.
* :mod:`oir.llm.prompt`: :func:`render_prompt` fills a versioned prompt file
  (``oir/prompts/<version>.txt``) with the counter vocabulary and a batch of numbered narrations.
* :mod:`oir.llm.reply`: :func:`response_format` / :func:`reply_schema` for servers that
  constrain their output to JSON, and :func:`parse_reply`, which turns a model's reply into one
  proposal list per segment. It only ever calls ``json.loads``: nothing the model says is
  executed.
* :mod:`oir.llm.cache`: :class:`ReplyCache` keeps each segment's parsed proposals in SQLite,
  keyed by prompt version, model and narration text, so a repeated segment costs no call.
* :mod:`oir.llm.breaker`: :class:`CircuitBreaker`, so a dead server costs one quick check per
  batch, not a timeout per segment.
* :mod:`oir.llm.relabeler`: :class:`LLMRelabeler` ties them together behind the
  :class:`~oir.relabel.Relabeler` interface; its ``propose_batch`` never raises because of the
  server or the model. :func:`make_llm_relabeler` builds one from CLI-style settings.

The names below are re-exported here, so ``from oir.llm import ...`` reaches all of them.
"""

from oir.llm.breaker import CircuitBreaker
from oir.llm.cache import DEFAULT_CACHE_PATH, ReplyCache
from oir.llm.client import (
    ChatClient,
    EndpointPool,
    LLMError,
    api_key_from_env,
    check_reachable,
    make_client,
    split_urls,
)
from oir.llm.prompt import DEFAULT_PROMPT, load_prompt, render_prompt
from oir.llm.relabeler import LLMRelabeler, make_llm_relabeler
from oir.llm.reply import JSON_MODES, MAX_REPLY_CHARS, parse_reply, reply_schema, response_format

__all__ = [
    "DEFAULT_CACHE_PATH",
    "DEFAULT_PROMPT",
    "JSON_MODES",
    "MAX_REPLY_CHARS",
    "ChatClient",
    "CircuitBreaker",
    "EndpointPool",
    "LLMError",
    "LLMRelabeler",
    "ReplyCache",
    "api_key_from_env",
    "check_reachable",
    "load_prompt",
    "make_client",
    "make_llm_relabeler",
    "parse_reply",
    "render_prompt",
    "reply_schema",
    "response_format",
    "split_urls",
]
