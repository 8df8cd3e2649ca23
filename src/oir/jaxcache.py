"""JAX's persistent compilation cache, on for every oir entry point.

A Craftax rollout takes 10-40 s to compile; the cache makes the second run of any command (and
every test session after the first) skip it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oir" / "jax"


def enable(path: str | Path | None = None) -> Path:
    """Turn the cache on at ``path`` (else ``$OIR_JAX_CACHE``, else ``~/.cache/oir/jax``)."""
    path = Path(path or os.environ.get("OIR_JAX_CACHE") or DEFAULT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every compile, not only the slow ones: tests compile many small functions.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
