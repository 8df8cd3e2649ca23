"""bench/headline.py and oir.curves: the headline table, the × ratio, the curve band, AUC and steps
to a threshold, on run dirs built here (no training)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

import headline

from oir.curves import auc, band, steps_to

BENCH = Path(__file__).parents[1] / "bench"


def make_run(dir: Path, tasks: float, paraphrases: float, all_: float, env_steps: int = 5_000_000,
             curve: list[tuple[int, float]] = (), by_holdout: bool = True) -> Path:
    """A run dir as oir compare leaves it: config, summary, metrics (evaluations on some rows), eval-test."""
    dir.mkdir(parents=True)
    (dir / "config.json").write_text(json.dumps({"eval_episodes": 0, "eval_max_steps": 500}))
    (dir / "summary.json").write_text(json.dumps({"env_steps": env_steps, "wall_s": 1.0}))
    rows = []
    for steps, rate in curve:  # a row without an evaluation before each one with
        rows += [{"update": len(rows) + 1, "env_steps": steps - 1000, "loss": 0.5},
                 {"update": len(rows) + 2, "env_steps": steps, headline.CURVE_KEY: rate,
                  "eval_success_all": 0.99}]
    (dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = {"settings": {"suite": "suites/standard.jsonl", "split": "test", "episodes": 4, "max_steps": 1000},
          "success_by_split": {"test": all_, "all": all_}, "lines": []}
    if by_holdout:
        ev["success_by_holdout"] = {headline.HELD_OUT_TASK: tasks, headline.HELD_OUT_PARAPHRASE: paraphrases,
                                    "all": all_}
    else:  # an evaluation cached before success_by_holdout was reported: only its per-line results
        ev["lines"] = [{"id": "a", "holdout": headline.HELD_OUT_TASK, "successes": round(8 * tasks), "episodes": 8},
                       {"id": "b", "holdout": headline.HELD_OUT_PARAPHRASE, "successes": round(8 * paraphrases),
                        "episodes": 8}]
    (dir / "eval-test.json").write_text(json.dumps(ev))
    return dir


SEED0 = [(1_000_000, 0.1), (2_000_000, 0.3), (3_000_000, 0.5)]
SEED1 = [(1_000_000, 0.3), (2_000_000, 0.5), (3_000_000, 0.4), (4_000_000, 0.6)]  # one more than seed 0


@pytest.fixture
def runs(tmp_path) -> Path:
    """no-relabel in one compare dir; narrator+suite's seeds in two others, as separate compares leave them."""
    root = tmp_path / "runs"
    make_run(root / "base" / "no-relabel-s0", 0.20, 0.50, 0.30)
    make_run(root / "base" / "no-relabel-s1", 0.30, 0.60, 0.40)
    make_run(root / "x-s0" / "narrator+suite-s0", 0.28, 0.40, 0.35, curve=SEED0)
    make_run(root / "x-s1" / "narrator+suite-s1", 0.33, 0.50, 0.37, curve=SEED1)
    (root / "x-s1" / "half-done-s0").mkdir()  # trained, never evaluated: left out
    (root / "x-s1" / "half-done-s0" / "config.json").write_text("{}")
    return root


def test_the_table_gives_means_per_seed_and_the_ratio_to_the_baseline(runs, capsys):
    assert headline.main([str(runs), "--methods", "no-relabel,narrator+suite"]) == 0
    out = capsys.readouterr()
    rows = [x for x in out.out.splitlines() if x.startswith("| ")]
    assert rows == [
        "| method | seeds | env steps | held-out tasks % | × no-relabel | held-out paraphrases % | all test lines % |",
        "| no-relabel | 0, 1 | 5,000,000 | 25.0 (20.0, 30.0) | 1.00 | 55.0 | 35.0 |",
        # (28 + 33) / 2 = 30.5; 30.5 / 25.0 = 1.22
        "| narrator+suite | 0, 1 | 5,000,000 | 30.5 (28.0, 33.0) | 1.22 | 45.0 | 36.0 |",
    ]
    assert "the test split, 4 episode(s) per line, cap 1000 steps" in out.out
    assert "half-done-s0" in out.err  # named as left out, not an error


def test_rows_default_to_sorted_methods_and_another_baseline(runs, capsys):
    assert headline.main([str(runs / "base"), str(runs / "x-s0"), str(runs / "x-s1" / "narrator+suite-s1"),
                          "--baseline", "narrator+suite"]) == 0
    rows = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")]
    assert rows[0].split(" | ")[4] == "× narrator+suite"
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| narrator+suite", "| no-relabel"]
    assert rows[2].split(" | ")[4] == "0.82"  # 25.0 / 30.5


def test_held_out_rates_from_per_line_results_when_the_evaluation_predates_them(tmp_path, capsys):
    make_run(tmp_path / "no-relabel-s3", 0.25, 0.75, 0.5, env_steps=1_000_000, by_holdout=False)
    assert headline.main([str(tmp_path / "no-relabel-s3")]) == 0
    assert "| no-relabel | 3 | 1,000,000 | 25.0 | 1.00 | 75.0 | 50.0 |" in capsys.readouterr().out


def test_band_is_mean_min_max_over_the_steps_every_seed_has():
    x, mean, lo, hi = band([SEED0, SEED1, []])  # a seed without evaluations is no seed here
    assert x.tolist() == [1e6, 2e6, 3e6]  # 4M: seed 0 has no evaluation there
    assert np.allclose(mean, [0.2, 0.4, 0.45])
    assert np.allclose(lo, [0.1, 0.3, 0.4])
    assert np.allclose(hi, [0.3, 0.5, 0.5])
    assert headline.curve([{"env_steps": 5, "loss": 1.0}, {"env_steps": 10, headline.CURVE_KEY: 0.5}]) == [(10, 0.5)]


def test_auc_and_steps_to_threshold_by_hand():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([20.0, 40.0, 45.0])
    assert auc(x, y) == pytest.approx((20 + 40) / 2 + (40 + 45) / 2)  # 72.5
    assert auc(np.array([0.0, 1.0, 3.0]), np.array([0.0, 10.0, 10.0])) == pytest.approx(5 + 20)
    assert steps_to(x, y, 35) == 2.0  # the first evaluation at or above it, not interpolated
    assert steps_to(x, y, 20) == 1.0
    assert steps_to(x, y, 45.1) is None


def test_curve_lines_plot_and_markdown_file(runs, tmp_path, capsys):
    png, md = tmp_path / "out" / "headline.png", tmp_path / "out" / "headline.md"
    png.parent.mkdir()
    assert headline.main([str(runs), "--plot", str(png), "--out-md", str(md), "--threshold", "35",
                          "--labels", "narrator+suite=OIR,no-relabel=No relabeling", "--title", "T"]) == 0
    out = capsys.readouterr().out
    # seed means 20, 40, 45 % at 1, 2, 3M: AUC 72.5; 35% first reached at the 2M evaluation
    assert ("- narrator+suite: AUC 72.5 %·M steps over 1.00-3.00M env steps (3 evaluations, 2 seed(s); "
            "1 evaluation(s) not shared by every seed left out); 35% first reached at 2,000,000 env steps") in out
    assert "- no-relabel: no training-time held-out-task evaluations in metrics.jsonl" in out
    assert "1 episode(s) per suite line, cap 500 steps" in out
    assert md.read_text() == out
    assert "![T](headline.png)" in out  # relative to the markdown file
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (432, 720)  # 6 x 3.6 in at 120 dpi

    assert headline.main([str(runs), "--threshold", "60", "--baseline", ""]) == 0
    out = capsys.readouterr().out
    assert "; 60% not reached" in out
    assert "×" not in out.split("\n")[0]


@pytest.mark.parametrize(("args", "says"), [
    (["--baseline", "narrator"], "baseline method 'narrator' not among the runs found"),
    (["--methods", "no-relabel,ellm"], "no runs of ellm"),
    (["--labels", "narrator+suite"], "is not method=Label"),
    (["--threshold", "150"], "--threshold is a percentage"),
])
def test_bad_input_is_one_line_and_exit_2(runs, capsys, args, says):
    assert headline.main([str(runs), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_a_missing_path_or_no_runs_exits_2_without_a_traceback(tmp_path):
    for path, says in [(tmp_path / "nope", "no such path"), (tmp_path, "no run dirs")]:
        p = subprocess.run([sys.executable, str(BENCH / "headline.py"), str(path)], capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr.strip().splitlines() == [f"headline: {says}: {path}" if says == "no such path"
                                                 else f"headline: no run dirs (config.json and eval-test.json) under {path}"]
        assert p.stdout == ""


def test_the_holdout_names_agree_with_the_suites():
    from oir.suites import HELD_OUT_PARAPHRASE, HELD_OUT_TASK

    assert (headline.HELD_OUT_TASK, headline.HELD_OUT_PARAPHRASE) == (HELD_OUT_TASK, HELD_OUT_PARAPHRASE)
    # oir.train._during_eval's key for held-out tasks, made from the holdout name as it makes it
    made = f"eval_success_{HELD_OUT_TASK.replace('-', '_').replace(' ', '_')}s"
    assert made == headline.CURVE_KEY


def test_runs_on_a_label_axis_are_rows_of_their_own(tmp_path, capsys):
    for share, tasks in (("0.1", 0.25), ("1", 0.5)):
        make_run(tmp_path / f"labels-{share}" / "no-relabel-s0", tasks, 0.5, 0.5)
    assert headline.main([str(tmp_path), "--baseline", "no-relabel labels=1"]) == 0
    out = capsys.readouterr().out
    assert "| no-relabel labels=0.1 | 0 |" in out and "| no-relabel labels=1 | 0 |" in out
    # a legend name for a method whose name holds '=' itself
    assert headline.main([str(tmp_path), "--baseline", "", "--labels", "no-relabel labels=0.1=A tenth=s"]) == 0
    assert headline._parse_labels("no-relabel labels=0.1=A tenth=s,no-relabel=B", ["no-relabel labels=0.1", "no-relabel"]) \
        == {"no-relabel labels=0.1": "A tenth=s", "no-relabel": "B"}
