"""The ``oir`` command's entry point: it joins a run of several processes before JAX starts.

``jax.distributed.initialize`` must run before anything initialises JAX's backend, and importing
Craftax does (its constants are device arrays), as does importing :mod:`oir.cli`. So ``oir train
--num-processes N --process-id I --coordinator HOST:PORT`` is looked for here, in the raw
arguments, and the runtime is joined first (:func:`oir.devices.start_processes`); everything
else, flags included, is then :mod:`oir.cli`'s, which checks them as usual.
"""

from __future__ import annotations

import sys


def _flag(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``--name V`` or ``--name=V``; the last one wins), or None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def join(argv: list[str]) -> None:
    """Join the run of several processes that ``argv`` (an ``oir`` command line) asks for, if any.
    Values that are not numbers are left to the command's own checks."""
    if argv[:1] != ["train"]:
        return
    try:
        n, pid = int(_flag(argv, "--num-processes") or 1), int(_flag(argv, "--process-id") or 0)
    except ValueError:
        return
    coordinator = _flag(argv, "--coordinator") or ""
    if n > 1 and 0 <= pid < n and ":" in coordinator:
        from oir.devices import DeviceError, start_processes

        try:
            start_processes(coordinator, n, pid)
        except DeviceError as e:
            print(f"oir: error: {e}", file=sys.stderr)
            sys.exit(2)


def entry() -> None:
    join(sys.argv[1:])
    from oir.cli import entry as run

    run()


if __name__ == "__main__":
    entry()
