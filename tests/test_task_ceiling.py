"""bench/task_ceiling.py: the per-task best over reports, and the oracle's mean."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

import task_ceiling

REPORT = """# report

### Held-out tasks one by one (success %, mean over seeds)

| held-out task | text | {a} | {b} |
|---|---|---:|---:|
| `collect-coal` | Mine some coal. | {coal_a} | {coal_b} |
| `defeat-skeleton` | Defeat a skeleton. | 0 | — |

## Success over training
| other | table | 100 | 100 |
"""


def test_the_oracle_keeps_each_tasks_best_over_methods_and_reports(tmp_path, capsys):
    one = tmp_path / "one-report.md"
    one.write_text(REPORT.format(a="no-relabel", b="narrator", coal_a=69, coal_b=34.5))
    two = tmp_path / "two-report.md"
    two.write_text(REPORT.format(a="no-relabel", b="narrator+suite", coal_a=50, coal_b=25))
    assert task_ceiling.held_out_tables(one.read_text()) == {
        "no-relabel": {"collect-coal": 69.0, "defeat-skeleton": 0.0}, "narrator": {"collect-coal": 34.5}}
    assert task_ceiling.main(task_ceiling.Args(reports=[one, two], goal=40.0)) == 0
    out = capsys.readouterr().out
    assert "| `collect-coal` | 69 | one: no-relabel |" in out
    assert "the per-task oracle's mean: 34.5%" in out  # (69 + 0) / 2; the table after it is not read
    assert "goal 40.0%: beyond the oracle's reach (+5.5 points)" in out


def test_only_the_reports_on_one_suite_count(tmp_path, capsys):
    classic = tmp_path / "c-report.md"
    classic.write_text("Final evaluation: the test split of `standard.jsonl`.\n"
                       + REPORT.format(a="no-relabel", b="narrator", coal_a=80, coal_b=20))
    full = tmp_path / "f-report.md"
    full.write_text("Final evaluation: the test split of `full.jsonl`.\n"
                    + REPORT.format(a="no-relabel", b="narrator", coal_a=10, coal_b=100))
    assert task_ceiling.suite_of(full.read_text()) == "full.jsonl" and task_ceiling.suite_of("old") == "standard.jsonl"
    assert task_ceiling.main(task_ceiling.Args(reports=[classic, full])) == 0
    out = capsys.readouterr().out
    assert "| `collect-coal` | 80 | c: no-relabel |" in out and "from 1 reports (1 on other suites left out)" in out
    assert task_ceiling.main(task_ceiling.Args(reports=[classic, full], suite="full.jsonl")) == 0
    assert "| `collect-coal` | 100 | f: narrator |" in capsys.readouterr().out


def test_no_table_is_one_error_line(tmp_path, capsys):
    empty = tmp_path / "x-report.md"
    empty.write_text("# nothing here\n")
    assert task_ceiling.main(task_ceiling.Args(reports=[empty])) == 2
    assert capsys.readouterr().err.count("\n") == 1
    headed = tmp_path / "y-report.md"
    headed.write_text("### Held-out tasks one by one\n\nno table yet\n")
    assert task_ceiling.held_out_tables(headed.read_text()) == {}
    assert task_ceiling.main(task_ceiling.Args(reports=[tmp_path / "gone-report.md"])) == 2
    assert capsys.readouterr().err == f"task_ceiling: report not found: {tmp_path / 'gone-report.md'}\n"
