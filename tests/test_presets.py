"""Training presets (``oir train --preset``), the defaults they document, human labels
(``--labels``: whole train tasks), retired options and old configs (``train.migrate``)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, fields, is_dataclass, replace
from itertools import pairwise
from pathlib import Path

import pytest
import tyro

from oir import presets
from oir.cli import main
from oir.compare import CompareConfig, run_config
from oir.suites import STANDARD_SUITE, label_subset, load_suite
from oir.train import (
    RETIRED,
    ConfigError,
    TrainConfig,
    _train_lines,
    load_config,
    migrate,
    retired_flag,
    train,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
DUMMY_LLM = "http://127.0.0.1:9/v1"  # the discard port: validation only, nothing is asked
STANDARD = load_suite(STANDARD_SUITE)
TRAIN = [x for x in STANDARD if x.split == "train"]
TASKS = sorted({x.task_id for x in TRAIN})


def preset(name: str) -> TrainConfig:
    cfg = presets.apply(TrainConfig(), name)
    return replace(cfg, llm_url=DUMMY_LLM) if name == "paper" else cfg


# ---------------------------------------------------------------------------------------------
# The presets and the defaults


def test_the_defaults_are_the_oir_preset():
    cfg = TrainConfig()
    assert cfg == presets.apply(TrainConfig(), "oir") and cfg.preset == "oir"
    assert presets.PRESETS["oir"].overrides == {}  # the preset is the defaults, nothing else
    # what the oir preset documents: PPO, narrator relabels added to the suite's labels, world
    # spans of 256 steps, the count-based bonus, 5M env steps
    assert (cfg.algo, cfg.relabel, cfg.labels, cfg.reward, cfg.suggest) == ("ppo", "narrator", 1.0, "verified", "")
    assert (cfg.achievement_bonus, cfg.achievement_bonus_counts) == (0.5, 500)
    assert (cfg.relabeling.world_span, cfg.steps) == (256, 5_000_000)


def test_every_preset_has_its_summary_its_figure_and_the_command_that_measured_it():
    assert list(presets.PRESETS) == ["oir", "labelled", "zero-label", "ellm", "paper"]
    for name, p in presets.PRESETS.items():
        assert p.summary and p.measured and p.command.startswith("oir compare "), name
        reports = re.findall(r"docs/results/[\w.@/-]+\.md", p.measured)
        assert reports, name
        for report in reports:
            assert (ROOT / report).is_file(), (name, report)
            if report.endswith("-s0-report.md") and " and -s1" in p.measured:  # "...-s0-report.md and -s1"
                assert (ROOT / report.replace("-s0-report", "-s1-report")).is_file(), (name, report)
        tyro.cli(CompareConfig, args=shlex.split(p.command)[2:])  # the command parses


@pytest.mark.parametrize("name", ["oir", "labelled", "zero-label"])
def test_the_headline_presets_were_measured_at_their_own_settings(name):
    """oir compare's method at the command's options trains what the preset trains."""
    cc = tyro.cli(CompareConfig, args=shlex.split(presets.PRESETS[name].command)[2:])
    got, want = run_config(cc, cc.methods, 0), presets.apply(TrainConfig(), name)
    for f in ("algo", "relabel", "labels", "reward", "suggest", "steps", "achievement_bonus",
              "achievement_bonus_counts", "network", "relabeling", "ppo", "pqn"):
        assert getattr(got, f) == getattr(want, f), (name, f)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_parses(name):
    cfg = preset(name)
    assert cfg.preset == name
    validate(cfg)
    if name == "paper":  # the LLM relabeler needs a server
        with pytest.raises(ConfigError, match="--relabel llm needs --llm-url"):
            validate(presets.apply(TrainConfig(), name))


def test_presets_change_only_what_makes_them_another_method():
    """Every preset but `paper` keeps the headline's shared settings (learner, bonus, spans)."""
    base = asdict(TrainConfig())
    for name in ("labelled", "zero-label", "ellm"):
        cfg = asdict(presets.apply(TrainConfig(), name))
        changed = {k for k in base if base[k] != cfg[k]} - {"preset"}
        assert changed <= {"relabel", "labels", "suggest", "reward", "delta"}, (name, changed)


def test_an_unknown_preset_or_override_is_a_value_error():
    with pytest.raises(ValueError, match=r"unknown --preset 'nope' \(choose from oir, labelled, zero-label, ellm, paper\)"):
        presets.apply(TrainConfig(), "nope")
    with pytest.raises(ValueError, match="'fresh_start' is not an option"):
        presets._overridden(TrainConfig(), {"fresh_start": 0.5})
    with pytest.raises(ValueError, match="'seed_suite' is not an option"):
        presets._overridden(TrainConfig(), {"relabeling": {"seed_suite": True}})


def tiny(cfg: TrainConfig, out: Path) -> TrainConfig:
    """One update on the shapes of tests/test_oir.py: 8 envs x 16 steps, a 64-step replay."""
    return replace(cfg, steps=8 * 16, num_envs=8, encoder="hash", eval_episodes=0, checkpoint_every=0, out=out,
                   max_task_steps=32,
                   relabeling=replace(cfg.relabeling, history=64, batch=8, window=8,
                                      world_span=min(cfg.relabeling.world_span, 48)),
                   ppo=replace(cfg.ppo, num_steps=16, num_minibatches=2), pqn=replace(cfg.pqn, num_minibatches=2))


@pytest.mark.parametrize("name", [n for n in presets.PRESETS if n != "paper"])  # paper needs an LLM server
def test_every_preset_trains_one_update(name, tmp_path):
    out = tmp_path / name
    summary = train(tiny(presets.apply(TrainConfig(), name), out), progress=False)
    assert summary["env_steps"] == 8 * 16
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == name and config["algo"] == "ppo"
    assert "achievement_unlocks" in summary  # the count-based bonus: every preset but paper has it
    labels = summary["labels"]
    assert (labels["share"], labels["seed"]) == (0.0 if name == "zero-label" else 1.0, 0)
    assert labels["train_lines"] == (0 if name in ("zero-label", "ellm") else len(TRAIN))  # ELLM trains on none
    if name == "ellm":
        assert "rule-based suggester" in summary["suggester"] and "relabeling" not in summary
    elif name == "labelled":
        assert summary["relabeler"] == "none" and "relabeling" not in summary
    else:
        assert summary["relabeler"].startswith("narrator relabeler") and "relabeling" in summary
        rows = [json.loads(x) for x in (out / "instructions.jsonl").read_text().splitlines()]
        seeded = [r["text"] for r in rows if r["first_seen_step"] == 0]  # in the buffer before any step
        if name == "oir":  # the suite's train lines start the buffer
            assert seeded and set(seeded) <= {x.text for x in TRAIN}
        else:  # zero-label: the buffer started empty, every row is a relabel
            assert seeded == []


def test_a_default_run_resumes_from_its_checkpoint_and_redoes_the_same_update(tmp_path, capsys):
    """The oir preset (labels seeded into the relabel buffer, the count-based bonus): the runner a
    checkpoint restores into has the relabel tables' shapes, and the host state comes back."""
    cfg = tiny(TrainConfig(), tmp_path / "run")
    cfg = replace(cfg, steps=2 * 8 * 16, checkpoint_every=8 * 16,
                  relabeling=replace(cfg.relabeling, synchronous=True))  # the same seed, the same run
    train(cfg, progress=False)
    timing = ("sps", "wall_s", "relabel_wall_frac", "relabel_worker_frac", "texts_embedded")

    def rows() -> list[dict]:
        return [{k: v for k, v in json.loads(x).items() if k not in timing}
                for x in (cfg.out / "metrics.jsonl").read_text().splitlines()]

    before = rows()
    summary = train(cfg, progress=False, resume=True)
    assert f"resuming {cfg.out} after update 1" in capsys.readouterr().err
    assert summary["resumed_after_update"] == 1 and summary["labels"]["train_lines"] == len(TRAIN)
    assert rows() == before


# ---------------------------------------------------------------------------------------------
# The command line: --preset, options beside it, retired options


@pytest.fixture
def captured(monkeypatch):
    """``oir train`` parsed but not run: the config train() would have been given."""
    got: list[TrainConfig] = []

    def fake_train(cfg, progress=True, resume=False):
        got.append(cfg)
        return {"relabeler": "none", "env_steps": cfg.steps, "wall_s": 0.0}

    monkeypatch.setattr("oir.train.train", fake_train)
    return got


def test_options_given_beside_a_preset_override_it(captured, tmp_path):
    assert main(["train", "--preset", "labelled", "--steps", "4096", "--out", str(tmp_path / "a")]) == 0
    cfg = captured[-1]
    assert (cfg.preset, cfg.relabel, cfg.steps, cfg.algo) == ("labelled", "none", 4096, "ppo")
    assert main(["train", "--steps", "64", "--preset=zero-label", "--labels", "0.5", "--algo", "pqn",
                 "--relabeling.world-span", "32", "--out", str(tmp_path / "b")]) == 0
    cfg = captured[-1]
    assert (cfg.preset, cfg.relabel, cfg.labels, cfg.algo, cfg.relabeling.world_span) == (
        "zero-label", "narrator", 0.5, "pqn", 32)
    assert main(["train", "--steps", "64", "--out", str(tmp_path / "c")]) == 0  # no --preset: the defaults, oir
    assert captured[-1] == replace(TrainConfig(), steps=64, out=tmp_path / "c")


@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "unknown --preset 'nope' (choose from oir, labelled, zero-label, ellm, paper)"),
    (["--preset", "paper"], "--relabel llm needs --llm-url (an OpenAI-compatible server, or local)"),
    (["--preset", "labelled", "--config", "/nonexistent/config.json"],
     "--preset starts a new run from a preset: it does not go with --resume or --config"),
    (["--preset", "labelled", "--labels", "0"], "--relabel none trains on human labels only: it needs --labels above 0"),
])
def test_a_bad_preset_is_one_line(tmp_path, capsys, args, message):
    assert main(["train", "--steps", "64", "--out", str(tmp_path / "run"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {message}"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("oir: error: ")
    return err.strip()


@pytest.mark.parametrize("argv,start,instead", [
    (["train", "--fresh-start", "0.5"], "--fresh-start was retired (it measured negative)", "nothing replaces it"),
    (["train", "--fresh-start=0.5"], "--fresh-start was retired", "nothing replaces it"),
    (["train", "--relabeling.seed-suite"], "--relabeling.seed-suite was retired", "--labels replaced it"),
    (["train", "--relabeling.no-shape-prior"], "--relabeling.no-shape-prior was retired", "nothing replaces it"),
    (["train", "--achievement-bonus-fade", "0.5"], "--achievement-bonus-fade was retired",
     "--achievement-bonus-counts, replaced it"),
    (["train", "--ppo.relabel-sil-coef", "0.1"], "--ppo.relabel-sil-coef was retired", "--ppo.relabel-bc-coef"),
    (["train", "--pqn.bootstrap-timeouts"], "--pqn.bootstrap-timeouts was retired", "a timeout always bootstraps"),
    (["compare", "--train.relabeling.rarity", "1"], "--train.relabeling.rarity was retired", "nothing replaces it"),
    (["compare", "--steps", "64", "--train.relabeling.sampling", "unused-first"],
     "--train.relabeling.sampling was retired", "windows are always drawn uniformly"),
])
def test_a_retired_option_is_one_line_naming_what_replaced_it(capsys, argv, start, instead):
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"oir: error: {start}") and instead in line


@pytest.mark.parametrize("args,message", [
    (["--network", "medium"], "--network medium was retired (it measured negative): nothing replaces it"),
    (["--llm-json-mode", "compact"], "compact"),
])
def test_a_retired_value_is_one_line(tmp_path, capsys, args, message):
    assert main(["train", "--steps", "64", "--out", str(tmp_path / "run"), *args]) == 2
    line = one_error_line(capsys)
    assert message in line and args[0] in line


@pytest.mark.parametrize("dotted", list(RETIRED))
def test_every_retired_option_is_gone_and_its_flag_refused(dotted):
    holder, *path = [TrainConfig(), *dotted.split(".")]
    for part in path[:-1]:
        holder = getattr(holder, part)
    assert path[-1] not in {f.name for f in fields(holder)}, f"{dotted} is retired but still an option"
    flag = "--" + dotted.replace("_", "-")
    assert retired_flag(flag).startswith(f"{flag} was retired (it measured negative): ")
    assert retired_flag("--train." + flag[2:]) is not None  # as oir compare passes it


def test_a_live_option_is_not_refused():
    for flag in ("--labels", "--labels-seed", "--preset", "--relabeling.world-span", "--achievement-bonus-counts",
                 "--ppo.relabel-bc-coef", "--train.labels", "--relabeling.free-play", "--steps=10"):
        assert retired_flag(flag) is None, flag


# ---------------------------------------------------------------------------------------------
# Old configs (train.migrate)


def old_config(**changes) -> dict:
    """A current config.json's dict, as json.dumps(asdict(...)) writes it, changed."""
    raw = json.loads(json.dumps(asdict(TrainConfig()), default=str))
    for dotted, value in changes.items():
        *section, key = dotted.split("__")
        holder = raw[section[0]] if section else raw
        if value is DROP:
            holder.pop(key, None)
        else:
            holder[key] = value
    return raw


DROP = object()


def test_migrate_derives_labels_from_seed_suite():
    narrator = dict(labels=DROP, relabel="narrator")
    assert migrate(old_config(**narrator, relabeling__seed_suite=True))["labels"] == 1.0
    assert migrate(old_config(**narrator, relabeling__seed_suite=False))["labels"] == 0.0
    assert migrate(old_config(**narrator))["labels"] == 0.0  # before seed_suite: relabels only
    assert migrate(old_config(labels=DROP, relabel="none"))["labels"] == 1.0  # the baseline: the suite's lines
    raw = old_config(**narrator, relabeling__seed_suite=True)
    assert "seed_suite" not in migrate(raw)["relabeling"] and raw["relabeling"]["seed_suite"] is True  # a copy
    assert migrate(old_config(labels=0.25, relabeling__seed_suite=True))["labels"] == 0.25  # a saved share stays


def test_migrate_drops_retired_options_at_their_off_value_and_refuses_others():
    off = old_config(fresh_start=0.0, achievement_bonus_fade=0.0, llm_template_source="lifted",
                     ppo__relabel_sil_coef=0.0, ppo__bootstrap_timeouts=True, pqn__bootstrap_timeouts=True,
                     relabeling__sampling="uniform", relabeling__rarity=0.0, relabeling__revisit=0.0,
                     relabeling__shape_prior=False, relabeling__prefix_counts=False, relabeling__all_pairs=False,
                     relabeling__suite_share=0.0)
    assert migrate(off) == old_config()
    with pytest.raises(ConfigError, match=r"^x/config\.json: fresh_start = 0.5 was retired \(it measured negative\): "):
        migrate(old_config(fresh_start=0.5), "x/config.json")
    with pytest.raises(ConfigError, match=r"relabeling\.sampling = 'rare-first' was retired"):
        migrate(old_config(relabeling__sampling="rare-first"))
    with pytest.raises(ConfigError, match=r"pqn\.bootstrap_timeouts = False was retired"):
        migrate(old_config(pqn__bootstrap_timeouts=False))


def test_migrate_gives_options_added_since_what_the_code_did_before_them():
    got = migrate(old_config(relabeling__world_span=DROP, achievement_bonus=DROP, achievement_bonus_counts=DROP,
                             relabeling__max_proposals=DROP, preset=DROP))
    assert got["relabeling"]["world_span"] == 0 and got["relabeling"]["max_proposals"] == 6
    assert (got["achievement_bonus"], got["achievement_bonus_counts"], got["preset"]) == (0.0, 0, "")
    assert migrate(old_config()) == old_config()  # a current config is left as it is


def test_an_old_config_json_loads_as_the_run_it_was(tmp_path):
    raw = old_config(labels=DROP, preset=DROP, relabel="narrator", algo="pqn", fresh_start=0.0,
                     achievement_bonus=DROP, achievement_bonus_counts=DROP, relabeling__world_span=DROP,
                     relabeling__seed_suite=True, pqn__bootstrap_timeouts=True)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    cfg = load_config(tmp_path / "config.json")
    assert (cfg.algo, cfg.relabel, cfg.labels, cfg.preset) == ("pqn", "narrator", 1.0, "")
    assert (cfg.achievement_bonus, cfg.relabeling.world_span) == (0.0, 0)
    validate(cfg)
    (tmp_path / "config.json").write_text(json.dumps(old_config(fresh_start=0.5)))
    with pytest.raises(ConfigError, match=r"fresh_start = 0\.5 was retired"):
        load_config(tmp_path / "config.json")
    assert load_config(tmp_path / "config.json", strict=False).algo == "ppo"  # its policy still loads (oir eval)


# ---------------------------------------------------------------------------------------------
# Human labels: whole train tasks (suites.label_subset, --labels)


def tasks_of(lines) -> set[str]:
    return {x.task_id for x in lines}


@pytest.mark.parametrize("share", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_a_label_share_is_whole_train_tasks_and_never_a_test_line(share):
    got = label_subset(STANDARD, share, seed=0)
    assert all(x.split == "train" for x in got)
    assert len(tasks_of(got)) == max(1, round(share * len(TASKS)))
    assert got == [x for x in TRAIN if x.task_id in tasks_of(got)]  # every train line of each task, in order
    assert label_subset(STANDARD, share, seed=0) == got  # the same for the same seed
    assert label_subset(list(reversed(STANDARD)), share, seed=0) == list(reversed(got))  # whatever the order


def test_a_larger_label_share_holds_every_task_of_a_smaller_one():
    for seed in (0, 1, 7):
        shares = [tasks_of(label_subset(STANDARD, s, seed)) for s in (0.1, 0.3, 0.6, 1.0)]
        assert all(a < b for a, b in pairwise(shares))
    assert tasks_of(label_subset(STANDARD, 0.3, 0)) != tasks_of(label_subset(STANDARD, 0.3, 1))  # the seed draws


def test_label_share_zero_is_none_and_one_is_every_train_line():
    assert label_subset(STANDARD, 0.0) == []
    assert label_subset(STANDARD, 1.0, seed=5) == TRAIN
    assert label_subset([x for x in STANDARD if x.split == "test"], 1.0) == []
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label share must be in"):
            label_subset(STANDARD, bad)


def test_every_method_given_the_same_labels_trains_on_the_same_lines(tmp_path):
    for labels, seed in ((1.0, 0), (0.5, 0), (0.5, 3), (0.1, 1)):
        arms = [TrainConfig(relabel=r, labels=labels, labels_seed=seed) for r in ("none", "narrator")]
        lines = [_train_lines(cfg, STANDARD) for cfg in arms]
        assert lines[0] == lines[1] == label_subset(STANDARD, labels, seed) and lines[0]
    # oir compare: the labelled methods take --train.labels; the zero-label ones none
    cc = CompareConfig(out=tmp_path, train=replace(TrainConfig(), labels=0.5, labels_seed=2))
    got = {m: _train_lines(run_config(cc, m, 0), STANDARD) for m in ("no-relabel", "narrator+suite", "narrator")}
    assert got["no-relabel"] == got["narrator+suite"] == label_subset(STANDARD, 0.5, 2) and got["narrator"] == []


@pytest.mark.parametrize("labels", [0.0, 1.0])
def test_zero_labels_leave_no_suite_line_in_training(labels):
    from oir.encode import make_encoder
    from oir.hindsight import FREE_PLAY_ROW
    from oir.train import _hindsight

    cfg = TrainConfig(labels=labels, encoder="hash", num_envs=2, relabeling=replace(TrainConfig().relabeling, capacity=512))
    hs = _hindsight(cfg, make_encoder("hash", cache=None))
    try:
        seeded = hs.seed(_train_lines(cfg, STANDARD))  # what train() does before the first update
        w = hs.weights()
        if labels == 0:
            assert seeded == 0 and len(hs.buffer) == 0
            assert w.nonzero()[0].tolist() == [FREE_PLAY_ROW]  # free play only, until relabels come
        else:
            assert seeded == len(hs.buffer) > 0 and set(hs.buffer.texts()) <= {x.text for x in TRAIN}
            assert (w[hs.buffer.rows()] > 0).all()
    finally:
        hs.worker.close()


def _nested_fields(obj, prefix: str = "") -> set[str]:
    out = set()
    for f in fields(obj):
        value = getattr(obj, f.name)
        out |= _nested_fields(value, f"{prefix}{f.name}.") if is_dataclass(value) else {prefix + f.name}
    return out


def test_the_options_before_they_existed_are_options():
    from oir.train import BEFORE_OPTION

    assert set(BEFORE_OPTION) <= _nested_fields(TrainConfig())


def _flags(cls: type, prefix: str = "--") -> set[str]:
    """Every option tyro makes of a config dataclass, nested groups as --group.name."""
    out = set()
    for f in fields(cls):
        name = prefix + f.name.replace("_", "-")
        out |= _flags(f.default_factory, name + ".") if is_dataclass(f.default_factory) else {name}
    return out


def _listed(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^(?:│ | {2})(--[a-z][\w.-]*)", text, re.M)}


def test_train_help_shows_the_main_options_and_help_all_every_one(capsys):
    every = _flags(TrainConfig)
    with pytest.raises(SystemExit):
        main(["train", "--help-all"])
    assert _listed(capsys.readouterr().out) == every
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    shown = _listed(out)
    assert shown < every and len(shown) <= 50
    assert {"--preset", "--algo", "--relabel", "--labels", "--steps", "--seed", "--ppo.lr"} <= shown
    assert "--llm-duty" not in shown and "--pqn.eps-start" not in shown
    assert f"{len(shown)} of {len(every)} options shown" in out
    assert "help for argument" not in out and "Traceback" not in out


def test_short_help_reads_tyros_plain_output_too():
    from oir.cli import short_help

    plain = ("usage: oir train\n\n options\n ----\n  -h, --help   show\n  --algo STR   the learner\n"
             "               (default: ppo)\n  --llm-duty F  duty\n               more duty\n\n"
             " pqn options\n ----\n  --pqn.eps-start F  eps\n\n")
    text, shown, total = short_help(plain)
    assert (shown, total) == (1, 3)
    assert "--algo" in text and "(default: ppo)" in text
    assert "duty" not in text and "pqn options" not in text and "--pqn" not in text
