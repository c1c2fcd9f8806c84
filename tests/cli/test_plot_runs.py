"""Curves (PNG and terminal), the runs table and run diffs, on small hand-made run folders."""

from __future__ import annotations

import json
import math
import struct

import pytest
import yaml
from support import invoke

from nncli.cli import _register_commands
from nncli.runs.listing import best_metric, diff_runs, find_runs, flatten, list_runs, read_metrics
from nncli.viz.terminal_chart import line_chart, to_plain

_register_commands()


def make_run(root, name, *, lr=0.1, acc=(0.5, 0.7, 0.9), status="completed", torn=False, layers_out=8):
    """A run folder as `nncli train` writes it, with three evaluations."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    cfg = {
        "name": name.split("-")[0],
        "seed": 0,
        "model": {
            "input_shape": [4],
            "layers": [{"type": "MM", "out": layers_out}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
        },
        "optimizer": {"type": "sgd", "lr": lr},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "run.json").write_text(json.dumps({"status": status, "seed": 0}))
    lines = []
    for i, a in enumerate(acc):
        step = 10 * (i + 1)
        lines.append(json.dumps({"step": step - 5, "epoch": i, "lr": lr, "train_loss": 1.5 - 0.4 * i}))
        lines.append(
            json.dumps(
                {
                    "step": step,
                    "epoch": i,
                    "lr": lr,
                    "train_loss": 1.4 - 0.4 * i,
                    "val_loss": 1.2 - 0.3 * i,
                    "val_acc": a,
                }
            )
        )
    lines.append(json.dumps({"step": 40, "train_loss": None}))  # a non-finite loss, written as null
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"step": 41, "train_lo'  # killed mid-write
    (run / "metrics.jsonl").write_text(text)
    (run / "summary.json").write_text(
        json.dumps(
            {"steps": 30, "wall_time": 1.25, "test_acc": acc[-1] - 0.05, "test_loss": 0.6, "param_count": 67}
        )
    )
    return run


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "mlp-20260101-000000", lr=0.1, acc=(0.5, 0.8, 0.7))
    make_run(root, "mlp-20260101-000100", lr=0.03, acc=(0.4, 0.6, 0.95), torn=True, layers_out=16)
    sweep = root / "sweep-mlp-20260101-000200"
    make_run(sweep, "mlp-20260101-000201", status="failed", acc=(0.3,))
    (root / "notes").mkdir()  # not a run: ignored
    return root


def test_metrics_reader_skips_torn_lines_and_nulls(runs_dir):
    recs = read_metrics(runs_dir / "mlp-20260101-000100")
    assert len(recs) == 7 and recs[-1] == {"step": 40, "train_loss": None}
    assert best_metric(recs) == ("val_acc", 0.95, 30.0)
    assert best_metric(recs, "val_loss") == ("val_loss", pytest.approx(0.6), 30.0)
    assert best_metric(recs, "train_loss")[1] == pytest.approx(0.6)  # the null is not a minimum


def test_runs_table_lists_nested_sweep_runs(runs_dir):
    rows = list_runs(runs_dir)
    assert [r["run"] for r in rows] == ["mlp-20260101-000000", "mlp-20260101-000100", "mlp-20260101-000201"]
    first = rows[0]
    assert (first["config"], first["status"], first["best_metric"]) == ("mlp", "completed", "val_acc")
    assert first["best_value"] == 0.8 and first["best_step"] == 20.0
    assert (first["steps"], first["wall_time"], first["test_acc"]) == (30, 1.25, pytest.approx(0.65))
    assert rows[2]["status"] == "failed"


def test_runs_cli_json_and_table(runs_dir):
    res = invoke("runs", str(runs_dir), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 3 and rows[1]["best_value"] == 0.95
    res = invoke("runs", str(runs_dir))
    assert res.exit_code == 0
    assert "val_acc 0.95" in res.stdout and "failed" in res.stdout and "completed" in res.stdout
    assert res.stdout.count("val_acc") == 3


def test_flatten_uses_set_syntax():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": []}) == {"a.b[0]": 1, "a.b[1].c": 2, "d": []}


def test_diff_shows_only_what_differs_with_deltas(runs_dir):
    d = diff_runs(runs_dir / "mlp-20260101-000000", runs_dir / "mlp-20260101-000100")
    changed = {r["key"]: tuple(r["values"]) for r in d["config"]}
    assert changed == {"optimizer.lr": (0.1, 0.03), "model.layers[0].out": (8, 16)}
    metrics = {r["key"]: r for r in d["metrics"]}
    assert metrics["test_acc"]["values"] == [pytest.approx(0.65), pytest.approx(0.9)]
    assert metrics["test_acc"]["deltas"] == [0, pytest.approx(0.25)]
    assert metrics["best_val_acc"]["values"] == [0.8, 0.95]
    # identical metrics (wall time, parameter count, test loss) are not listed
    assert not {"wall_time", "param_count", "test_loss", "steps"} & set(metrics)
    assert "wall_time" in {r["key"] for r in diff_runs(*d["runs"], all_keys=True)["metrics"]}
    res = invoke(
        "runs", "diff", str(runs_dir / "mlp-20260101-000000"), str(runs_dir / "mlp-20260101-000100"), "--json"
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["config"] == d["config"]


def test_diff_of_three_runs_against_the_first(runs_dir):
    runs = [
        runs_dir / "mlp-20260101-000000",
        runs_dir / "mlp-20260101-000100",
        runs_dir / "sweep-mlp-20260101-000200" / "mlp-20260101-000201",
    ]
    d = diff_runs(*runs)
    assert len(d["runs"]) == 3
    lr = next(r for r in d["config"] if r["key"] == "optimizer.lr")
    assert lr["values"] == [0.1, 0.03, 0.1]
    res = invoke("runs", "diff", *map(str, runs))
    assert res.exit_code == 0, res.output
    assert "+0.25" in res.stdout and "wall_time" not in res.stdout


def test_runs_ranks_each_run_by_its_own_best_metric(tmp_path):
    run = make_run(tmp_path, "mlp-20260101-000000", acc=(0.5, 0.8, 0.7))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "train": {"best_metric": "val_loss"}}))
    (row,) = list_runs(tmp_path)
    assert (row["best_metric"], row["best_value"]) == ("val_loss", pytest.approx(0.6))


def test_eval_rows_train_loss_is_not_mixed_into_the_train_curve():
    from nncli.runs.listing import series

    recs = [
        {"event": "train", "step": 10, "train_loss": 1.0},
        {"event": "eval", "step": 10, "train_loss": 5.0, "val_loss": 2.0},  # an older log's eval row
        {"event": "eval", "step": 20, "train_loss_since_eval": 0.5, "val_loss": 1.0},
    ]
    assert series(recs, "train_loss") == ([10.0], [1.0])
    assert best_metric(recs, "train_loss") == ("train_loss", 0.5, 20.0)  # as the best checkpoint saw it


def test_diff_refuses_a_folder_that_is_not_a_run(runs_dir):
    from nncli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["runs", "diff", str(runs_dir / "notes"), str(runs_dir / "mlp-20260101-000000")])
    assert exc.value.code == 2


def seeded(root, name, seed, acc, lr=0.1):
    run = make_run(root, name, lr=lr, acc=acc)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": seed}))
    return run


def test_plot_groups_seeds_of_one_configuration_as_mean_and_band(tmp_path):
    from nncli.viz.curves import panels

    sweep = tmp_path / "sweep-mlp-20260101-000000"
    seeded(sweep, "t00-lr0.1-seed0-20260101-000001", 0, (0.5, 0.7, 0.9))
    seeded(sweep, "t01-lr0.1-seed1-20260101-000002", 1, (0.3, 0.5, 0.7))
    seeded(sweep, "t02-lr0.03-seed0-20260101-000003", 0, (0.4, 0.4, 0.4), lr=0.03)
    (sweep / "sweep.json").write_text("{}")
    data = panels([sweep], "val_acc")
    curves = {c[0]: c for c in data["val_acc"]}
    assert set(curves) == {"lr=0.1 (2 seeds)", "lr=0.03"}
    label, xs, ys, _, spread, _ = curves["lr=0.1 (2 seeds)"]
    assert xs == [10.0, 20.0, 30.0] and ys == pytest.approx([0.4, 0.6, 0.8])
    assert spread == pytest.approx([0.1, 0.1, 0.1])
    assert curves["lr=0.03"][4] is None
    # no timestamps in any legend label
    assert not any("2026" in c[0] for panel in data.values() for c in panel)


def test_plot_cli_takes_a_sweep_folder_and_a_shell_glob(tmp_path):
    sweep = tmp_path / "sweep-mlp-20260101-000000"
    seeded(sweep, "t00-lr0.1-seed0-20260101-000001", 0, (0.5, 0.7, 0.9))
    seeded(sweep, "t01-lr0.1-seed1-20260101-000002", 1, (0.3, 0.5, 0.7))
    (sweep / "sweep.json").write_text("{}")
    res = invoke("plot", str(sweep), "--terminal")
    assert res.exit_code == 0, res.output
    assert "(2 seeds)" in res.stdout
    # what the shell makes of runs/sweep-…/*: the trials and sweep.json
    res = invoke("plot", *map(str, sorted(sweep.iterdir())), "--terminal")
    assert res.exit_code == 0, res.output
    res = invoke("plot", str(sweep / "t0*"), "--terminal")  # a quoted pattern
    assert res.exit_code == 0, res.output


def test_plot_refuses_an_unknown_metric_with_a_suggestion(runs_dir):
    from nncli.cli import main

    run = runs_dir / "mlp-20260101-000000"
    res = invoke("plot", str(run), "--metric", "val_ac", "--terminal")
    assert res.exit_code != 0
    with pytest.raises(SystemExit) as exc:
        main(["plot", str(run), "--metric", "f1", "--terminal"])
    assert exc.value.code == 2
    from nncli.viz.curves import PlotError, panels

    with pytest.raises(PlotError, match="did you mean 'val_acc'"):
        panels([run], "val_ac")


def test_find_runs_on_a_single_run(runs_dir):
    run = runs_dir / "mlp-20260101-000000"
    assert find_runs(run) == [run]


# -- terminal chart ---------------------------------------------------------------------------------
def test_line_chart_draws_increasing_line_from_bottom_left_to_top_right():
    text = to_plain(line_chart([("up", [0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])], width=10, height=4))
    rows = [r for r in text.splitlines() if "┤" in r or "│" in r]
    assert len(rows) == 4
    plot = [r.split("┤" if "┤" in r else "│", 1)[1] for r in rows]
    assert all(len(p) == 10 for p in plot)
    blank = chr(0x2800)
    assert plot[-1][0] != blank and plot[0][-1] != blank  # starts bottom-left, ends top-right
    assert plot[0][0] == blank and plot[-1][-1] == blank
    assert rows[0].lstrip().startswith("3") and rows[-1].lstrip().startswith("0")
    assert "● up" in text and "step 3" in text


def test_line_chart_skips_non_finite_points_and_handles_empty():
    text = to_plain(line_chart([("a", [0, 1, 2], [1.0, math.nan, 2.0]), ("b", [], [])], width=8, height=3))
    assert "b (no data)" in text
    assert "(no data)" in to_plain(line_chart([("a", [0], [math.inf])]))


def test_plot_terminal_cli(runs_dir):
    res = invoke(
        "plot", str(runs_dir / "mlp-20260101-000000"), str(runs_dir / "mlp-20260101-000100"), "--terminal"
    )
    assert res.exit_code == 0, res.output
    assert "loss (log scale)" in res.stdout and "val_acc" in res.stdout
    assert "out=16 lr=0.03: val_loss" in res.stdout and "2026" not in res.stdout


# -- PNG ------------------------------------------------------------------------------------------
def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_png_has_the_asked_pixel_size_and_ink(runs_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="PNG plots need matplotlib (pip install 'nncli[plot]')")
    from matplotlib.image import imread

    out = tmp_path / "two.png"
    res = invoke(
        "plot",
        str(runs_dir / "mlp-20260101-000000"),
        str(runs_dir / "mlp-20260101-000100"),
        "-o",
        str(out),
        "--width",
        "640",
        "--height",
        "300",
    )
    assert res.exit_code == 0, res.output
    assert _png_size(out) == (640, 300)
    img = imread(out)
    assert img.shape[:2] == (300, 640)
    # non-empty: many pixels are neither white nor one flat colour (the curves, axes and text)
    assert (img[..., :3] < 0.9).any(axis=-1).mean() > 0.01


def test_write_curves_for_train(runs_dir):
    from nncli.viz.curves import have_matplotlib, write_curves

    run = runs_dir / "mlp-20260101-000000"
    path = write_curves(run)
    if not have_matplotlib():
        assert path is None
        return
    assert path == run / "curves.png" and _png_size(path) == (1200, 450)


def test_plot_of_a_run_without_metrics_is_a_user_error(tmp_path):
    from nncli.viz.curves import PlotError, panels

    run = make_run(tmp_path, "empty-20260101-000000")
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(PlotError, match="nothing to plot"):
        panels([run])


def test_without_matplotlib_plot_falls_back_to_the_terminal(runs_dir, monkeypatch):
    import nncli.viz.curves as plot

    monkeypatch.setattr(plot, "have_matplotlib", lambda: False)
    run = runs_dir / "mlp-20260101-000000"
    assert plot.write_curves(run) is None
    res = invoke("plot", str(run))
    assert res.exit_code == 0, res.output
    assert "loss (log scale)" in res.stdout and "● val_acc" in res.stdout
    assert not (run / "curves.png").exists()
    with pytest.raises(plot.PlotError, match=r"pip install 'nncli\[plot\]'"):
        plot.plot_png([run], run / "x.png")


def test_a_running_run_that_no_process_trains_is_listed_as_stopped(runs_dir):
    import fcntl

    run = runs_dir / "mlp-20260101-000000"
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    (run / ".lock").write_text("12345\n")  # left behind by a killed process
    assert {r["run"]: r["status"] for r in list_runs(runs_dir)}[run.name] == "stopped"
    with open(run / ".lock", "a+") as held:  # a live trainer holds the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert {r["run"]: r["status"] for r in list_runs(runs_dir)}[run.name] == "running"
