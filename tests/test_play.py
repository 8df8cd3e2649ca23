"""`oir play`: a tiny trained run follows a typed instruction into an animated GIF; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from oir.cli import main
from oir.play import Outcome, outcome_line
from oir.tasks import parse_spec


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("play") / "run"
    assert main(["train", "--out", str(out), "--encoder", "hash", "--num-envs", "8", "--steps", "1024",
                 "--algo", "pqn", "--relabel", "none", "--achievement-bonus", "0",
                 "--pqn.num-minibatches", "2", "--eval-episodes", "0"]) == 0
    return out


def spec(*clauses: tuple[str, int], **extra) -> str:
    return json.dumps({"all": [{"counter": c, "at_least": n} for c, n in clauses], **extra})


# (--task, --steps, --every, the last printed line, frames: the start, every K-th step and the last)
CASES = {
    "budget": (spec(("collect_diamond", 1), within=8), 20, 1, "task failed at step 8 (the 'within' budget ran out)", 9),
    "success": (spec(("health", 0)), 20, 1, "task succeeded at step 1", 2),
    "timeout": (spec(("collect_diamond", 1)), 6, 1, "task timed out at step 6 (not done within --steps 6)", 7),
    "no-task": (None, 6, 4, "played 6 steps (the --steps limit)", 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_play_writes_an_animated_gif_and_the_outcome(run_dir, tmp_path, capsys, case):
    task, steps, every, line, frames = CASES[case]
    gif = tmp_path / "out" / "play.gif"
    args = ["play", "--run", str(run_dir), "--instruction", "collect two saplings then drink water",
            "--steps", str(steps), "--every", str(every), "--scale", "2", "--out", str(gif)]
    assert main(args + (["--task", task] if task else [])) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == line
    assert any(x.startswith("events: ") for x in out)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.is_animated
        assert im.n_frames == frames
        assert im.size == (9 * 16 * 2, im.size[1]) and im.size[1] > 9 * 16 * 2  # the game plus the text


def test_outcome_line_when_the_game_ends_first():
    done = Outcome(42, "game_over", "the agent died")
    assert outcome_line(parse_spec(spec(("collect_wood", 1))), done, 300) == \
        "task not done: game over at step 42 (the agent died)"
    assert outcome_line(None, done, 300) == "game over at step 42 (the agent died)"


def bad_inputs(tmp: Path, run: Path) -> dict[str, tuple[list[str], str]]:
    no_ckpt = tmp / "no-ckpt"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text("{}")
    bad_config = tmp / "bad-config"
    (bad_config / "checkpoint").mkdir(parents=True)
    (bad_config / "config.json").write_text('{"algo": 1')
    empty_ckpt = tmp / "empty-checkpoint"
    (empty_ckpt / "checkpoint").mkdir(parents=True)
    (empty_ckpt / "config.json").write_text((run / "config.json").read_text())
    a_file = tmp / "a-file"
    a_file.write_text("")
    ok = ["--run", str(run), "--instruction", "collect wood", "--out", str(tmp / "x.gif")]
    return {
        "no-run": (["--run", str(tmp / "nope"), "--instruction", "collect wood", "--out", str(tmp / "x.gif")],
                   f"run dir not found: {tmp / 'nope'}"),
        "not-a-run": (["--run", str(tmp), "--instruction", "collect wood", "--out", str(tmp / "x.gif")],
                      f"{tmp} is not a training run (no config.json)"),
        "no-checkpoint": (["--run", str(no_ckpt), "--instruction", "collect wood", "--out", str(tmp / "x.gif")],
                          f"{no_ckpt} has no checkpoint (was training interrupted?)"),
        "bad-config": (["--run", str(bad_config), "--instruction", "collect wood", "--out", str(tmp / "x.gif")],
                       f"{bad_config / 'config.json'} is not an oir config.json "
                       "(JSONDecodeError: Expecting ',' delimiter: line 1 column 11 (char 10))"),
        "empty-checkpoint": (["--run", str(empty_ckpt), "--instruction", "collect wood", "--out", str(tmp / "x.gif")],
                             f"cannot read the checkpoint in {empty_ckpt / 'checkpoint'}: Metadata file (named "
                             f"_METADATA) does not exist at {empty_ckpt / 'checkpoint'}."),
        "empty-instruction": ([*ok, "--instruction", ""], "--instruction is empty (type what the agent should do)"),
        "blank-instruction": ([*ok, "--instruction", "  \t "], "--instruction is empty (type what the agent should do)"),
        "broken-json": ([*ok, "--task", "{all: 1"],
                        "--task: malformed JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        "unknown-counter": ([*ok, "--task", spec(("collect_woood", 1))],
                            "--task: all[0].counter: unknown counter 'collect_woood' (see `oir tasks list`)"),
        "empty-all": ([*ok, "--task", '{"all": []}'], "--task: all: is empty (a spec needs at least one clause)"),
        "steps": ([*ok, "--steps", "0"], "--steps must be at least 1, got 0"),
        "out-is-a-dir": ([*ok, "--out", str(tmp)], f"cannot write --out {tmp}: Is a directory"),
        "out-under-a-file": ([*ok, "--out", str(a_file / "x.gif")],
                             f"cannot write --out {a_file / 'x.gif'}: {a_file} is not a directory"),
    }


BAD = ["no-run", "not-a-run", "no-checkpoint", "bad-config", "empty-checkpoint", "empty-instruction", "blank-instruction", "broken-json",
       "unknown-counter", "empty-all", "steps", "out-is-a-dir", "out-under-a-file"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys, case):
    args, message = bad_inputs(tmp_path, run_dir)[case]
    assert main(["play", *args]) == 2
    assert capsys.readouterr().err.strip() == f"oir: error: {message}"
    assert not (tmp_path / "x.gif").exists()
