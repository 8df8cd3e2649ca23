"""User-facing errors and the path checks that raise them.

Every command ends bad input in one ``oir: error: ...`` line, never a traceback. The CLI prints
:class:`CliError` (and the domain errors: ``SuiteError``, ``SpecError``, ``ConfigError``) that way;
:func:`check_writable` fails before the work, not after it, when an output path cannot be written.
"""

from __future__ import annotations

from pathlib import Path


class CliError(Exception):
    """Bad input from the user: printed as one line."""


def first_line(e: BaseException, typed: bool = True, limit: int = 160) -> str:
    """``Type: first line of the message`` (``limit`` characters of it at most; without the type
    unless ``typed``; the type alone when there is no message): an exception said in one line."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return f"{type(e).__name__}: {text.splitlines()[0][:limit]}" if typed else text.splitlines()[0][:limit]


def check_writable(path: Path | None, option: str = "--out") -> None:
    """Fail before the work, not after it, when ``option``'s file cannot be written (leaves no file)."""
    if path is None:
        return
    existed = path.exists()
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CliError(f"cannot write {option} {path}: {parent} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise CliError(f"cannot write {option} {path}: {e.strerror or e}") from None
    if not existed:
        path.unlink()


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (parents made), or one CliError line naming the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None
