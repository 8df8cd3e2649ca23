"""The LLM relabeler's reply cache: each segment's parsed proposals in a SQLite file.

:class:`ReplyCache` keys them by prompt version, model and narration text, so a repeated
segment costs no call, in this run or a later one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_CACHE_PATH = Path("~/.cache/oir/llm_cache.sqlite")


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
