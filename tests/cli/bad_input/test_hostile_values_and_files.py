"""Numbers, sizes, nesting and files that are not what they claim: refused before anything runs or
is allocated, in one placed line."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import FILE_CFG, GOOD, LIMITED, edit, line_of
from forked_cli import run_forked
from support import assert_refused, run_many, run_nncli

# -- numbers, sizes, nesting: refused before anything runs or is allocated -----------------------------
#
# Each case is one class of input that used to crash, hang, allocate until a MemoryError, or pass
# silently: NaN/Inf where a finite number is meant, sizes that validate but cannot be allocated,
# nesting that exhausts Python's stack, files that are not what they claim to be. The memory cases run
# under a 1.5 GiB address-space limit, so a refusal that came after the allocation would fail them.

RES = "{type: MM, out: 8}"


def nested_residuals(depth: int) -> str:
    body = RES
    for _ in range(depth):
        body = "{type: Residual, layers: [" + body + ", {type: Tanh}]}"
    return body


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header(shape, dtype="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    with zipfile.ZipFile(d / "huge_header.npz", "w") as z:  # declares 4·10¹² values, holds 64 bytes
        z.writestr("x.npy", npy_header((10**12, 4)) + bytes(64))
        z.writestr("y.npy", npy_bytes(y))
    with zipfile.ZipFile(d / "not_npy.npz", "w") as z:
        z.writestr("x.npy", b"hello, these bytes are not an array")
        z.writestr("y.npy", npy_bytes(y))
    with zipfile.ZipFile(d / "padded.npz", "w", zipfile.ZIP_DEFLATED) as z:  # 10 MB behind a (40, 4) header
        z.writestr("x.npy", npy_bytes(x) + bytes(10_000_000))
        z.writestr("y.npy", npy_bytes(y))
    # a zip bomb: 10⁷ × 4 float64 zeros (320 MB, consistent header and sizes) in ~300 kB
    with zipfile.ZipFile(d / "bomb.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x.npy", "w", force_zip64=True) as fh:
            fh.write(npy_header((10**7, 4)))
            chunk = bytes(2**22)
            for _ in range(320_000_000 // len(chunk)):
                fh.write(chunk)
            fh.write(bytes(320_000_000 % len(chunk)))
        z.writestr("y.npy", npy_bytes(np.zeros(10**7, dtype=np.int64)))
    np.savez(d / "labels_1e30.npz", x=x, y=np.where(np.arange(40) == 5, 1e30, y))
    np.savez(
        d / "labels_u64.npz",
        x=x,
        y=np.where(np.arange(40) == 6, np.iinfo(np.uint64).max, y).astype(np.uint64),
    )
    (d / "escape.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n1,\x1b[31mred\x1b[0m,3,4,1\n")
    (d / "zero.csv").symlink_to("/dev/zero")
    (d / "zero.yaml").symlink_to("/dev/zero")
    return d


def hostile_cases(d: Path) -> dict[str, dict]:
    """name → dict(config text or None, args, expected texts, line the error points at, limit memory)."""
    big_layers = "".join("    - {type: Tanh}\n" for _ in range(20_000))
    deep = "[" * 10_000 + "]" * 10_000
    conv = edit(GOOD, "input_shape: [2]", "input_shape: [1, 8]")
    conv = edit(
        conv,
        "{type: MM, out: 8}",
        "{type: Conv1D, out: 2, kernel: 3, padding: 100000000}\n    - {type: Flatten}",
    )

    def case(text, expect, at=None, extra=(), limit=False):
        return dict(text=text, extra=list(extra), expect=expect, at=at, limit=limit)

    def data(source, expect, **kw):
        return case(FILE_CFG.replace("DATA", source), expect, at="source:", **kw)

    return {
        "lr .inf": case(edit(GOOD, "lr: 0.1", "lr: .inf"), ("optimizer.lr", "finite number", "inf"), "lr:"),
        "LeakyReLU slope .inf": case(
            edit(GOOD, "{type: Tanh}", "{type: LeakyReLU, negative_slope: .inf}"),
            ("model.layers[1].negative_slope", "finite number"),
            "LeakyReLU",
        ),
        "Dropout p .nan": case(
            edit(GOOD, "{type: Tanh}", "{type: Dropout, p: .nan}"),
            ("model.layers[1].p", "finite", "nan"),
            "Dropout",
        ),
        "--set momentum=.nan": case(
            GOOD,
            ("<command line>: optimizer.momentum", "finite number", "nan"),
            extra=("--set", "optimizer.momentum=.nan"),
        ),
        "--set clip_grad_norm=.inf": case(
            GOOD, ("train.clip_grad_norm", "finite number"), extra=("--set", "train.clip_grad_norm=.inf")
        ),
        "--set betas with a NaN": case(
            GOOD, ("optimizer.betas[1]", "finite"), extra=("--set", "optimizer.betas=[0.9, .nan]")
        ),
        "YAML nested 10,000 deep": case(
            GOOD + f"extra: {deep}\n", ("nested more than 200 levels",), "extra:"
        ),
        "--set value nested 10,000 deep": case(
            GOOD, ("<command line>", "nested more than 200 levels", "…"), extra=("--set", f"seed={deep}")
        ),
        "Residuals nested 65 deep": case(
            edit(GOOD, "{type: Tanh}", nested_residuals(65)),
            ("Residual", "nested more than 64 deep"),
            "Residual",
        ),
        "20,000 layers": case(
            edit(GOOD, "    - {type: Tanh}\n", big_layers), ("more than 50,000 values", "4,096 layers")
        ),
        "4,097 layers": case(
            edit(GOOD, "    - {type: Tanh}\n", "    - {type: Tanh}\n" * 4097),
            ("model.layers", "4,099 layers", "4,096"),
            "layers:",
        ),
        "n_samples 1e12": case(
            GOOD,
            ("data.n_samples", "1,000,000,000,000 synthetic examples", "GiB"),
            extra=("--set", "data.n_samples=1000000000000"),
            limit=True,
        ),
        "classes 1e9": case(
            GOOD,
            ("data.classes", "1,000,000,000 classes"),
            extra=("--set", "data.classes=1000000000"),
            limit=True,
        ),
        "padding that makes a huge layer": case(
            conv, ("model.layers[3]", "1,200,000,047 parameters", "GiB"), "out: 3", limit=True
        ),
        "val_loss without a validation split": case(
            edit(GOOD, "batch_size: 20}", "batch_size: 20, val_split: 0}"),
            ("train.best_metric", "val_loss needs a validation split"),
            "train:",
        ),
        "npz header declaring (1e12, 4)": data(
            "huge_header.npz", ("(1000000000000, 4)", "damaged"), limit=True
        ),
        "npz member that is not an npy": data("not_npy.npz", ("'x.npy' is not a .npy array",)),
        "npz member longer than its header": data("padded.npz", ("declares shape (40, 4)", "damaged")),
        "zip bomb": data("bomb.npz", ("50,000,000 values", "GiB", "available"), limit=True),
        "labels of 1e30": data("labels_1e30.npz", ("1e+30 at index 5",)),
        "labels of uint64 max": data("labels_u64.npz", ("18446744073709551615 at index 6",)),
        "escape sequence in a CSV cell": data("escape.csv", ("escape.csv:3:", "\\x1b[31mred\\x1b[0m")),
        "escape sequence in a YAML string": case(
            edit(GOOD, "source: spirals", 'source: "no\\e[2J\\u202efile.csv"'),
            ("no\\x1b[2J\\u202efile.csv", "not found"),
            "source:",
        ),
        "NUL byte in the data path": case(
            edit(GOOD, "source: spirals", 'source: "data\\0.csv"'), ("data.source", "NUL byte"), "source:"
        ),
        "/dev/zero as a CSV": data("zero.csv", ("zero.csv", "not a regular file"), limit=True),
        "/dev/zero as the config": dict(
            text=None, extra=[], expect=("zero.yaml", "not a regular file"), at=None, limit=True
        ),
    }


HOSTILE = list(hostile_cases(Path("/x")))


@pytest.fixture(scope="module")
def hostile_results(hostile):
    calls, meta = {}, {}
    for i, (name, c) in enumerate(hostile_cases(hostile).items()):
        cfg = hostile / f"h{i}.yaml" if c["text"] is not None else hostile / "zero.yaml"
        if c["text"] is not None:
            cfg.write_text(c["text"])
        runs = hostile / f"runs{i}"
        calls[name] = dict(
            args=["train", cfg, "--runs-dir", runs, "--quiet", *c["extra"]], cwd=hostile, timeout=60
        )
        if c["limit"]:
            calls[name].update(LIMITED)
        if c["at"] is not None:
            place = f"{cfg}:{line_of(c['text'], c['at'])}:"
        elif c["extra"]:
            place = "<command line>"
        else:
            place = str(cfg)
        meta[name] = (c["expect"], place, runs)
    # the memory-limited cases need a fresh interpreter (its BLAS threads set by LIMITED's variables)
    limited = {name: call for name, call in calls.items() if "preexec_fn" in call}
    forked = {name: call for name, call in calls.items() if name not in limited}
    done = {**run_many(limited), **run_many(forked, run=run_forked)}
    return {name: (res, *meta[name]) for name, res in done.items()}


@pytest.mark.parametrize("name", HOSTILE)
def test_numbers_sizes_nesting_and_odd_files_are_refused_in_one_placed_line(hostile_results, name):
    res, expect, place, runs = hostile_results[name]
    assert_refused(res, *expect, runs_dir=runs, place=place)
    assert "Warning" not in res.err and "\x1b" not in res.err, res  # no numpy warning, no raw escape


@pytest.mark.parametrize(
    "option, expect",
    [
        (("--eps", "nan"), "--eps: expected a finite number, got nan"),
        (("--eps", "0"), "--eps: the central-difference step must lie in (0, 1]"),
        (("--eps", "-1e-6"), "--eps"),
        (("--rtol", "nan"), "--rtol: expected a finite number"),
        (("--atol", "inf"), "--atol: expected a finite number"),
        (("--atol", "-1"), "--atol: a tolerance must be ≥ 0"),
    ],
)
def test_gradcheck_refuses_nan_zero_and_negative_steps_and_tolerances(tmp_path, option, expect):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(GOOD)
    assert_refused(run_nncli("gradcheck", cfg, *option, cwd=tmp_path), expect, place="<command line>")


def test_sweeps_too_large_or_too_deep_are_refused_before_any_trial(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(GOOD)
    many = ",".join(str(i / 1e5) for i in range(1, 201))
    res = run_many(
        {
            "seeds": dict(
                args=[
                    "sweep",
                    cfg,
                    "--grid",
                    "optimizer.lr=0.1",
                    "--seeds",
                    "100000000",
                    "--runs-dir",
                    tmp_path / "r1",
                ],
                timeout=60,
            ),
            "grid": dict(
                args=[
                    "sweep",
                    cfg,
                    "--grid",
                    f"optimizer.lr={many}",
                    "--grid",
                    "optimizer.momentum=0,0.5,0.9,0.1,0.2,0.3",
                    "--runs-dir",
                    tmp_path / "r2",
                ],
                timeout=60,
            ),
            "deep": dict(
                args=[
                    "sweep",
                    cfg,
                    "--grid",
                    "optimizer.lr=" + "[" * 5000 + "]" * 5000 + ",0.1",
                    "--runs-dir",
                    tmp_path / "r3",
                ],
                timeout=60,
            ),
        },
        run=run_forked,
    )
    assert_refused(res["seeds"], "100,000,000 trials", "1,000", runs_dir=tmp_path / "r1")
    assert_refused(res["grid"], "1,200 trials (200 × 6)", runs_dir=tmp_path / "r2")
    assert_refused(res["deep"], "nested more than 200 levels", runs_dir=tmp_path / "r3")
    assert len(res["deep"].err) < 400, res["deep"]  # the 10,000-character value is not echoed whole


def test_fifty_nested_residuals_train_and_inspect_in_linear_time(tmp_path):
    # each level used to zero its body's gradients twice and inspect looked up 2^depth YAML paths
    cfg = tmp_path / "deep.yaml"
    cfg.write_text(edit(GOOD, "{type: Tanh}", nested_residuals(50)))
    res = run_many(
        {
            "train": dict(
                args=["train", cfg, "--runs-dir", tmp_path / "runs", "--quiet", "--json"], timeout=90
            ),
            "inspect": dict(args=["inspect", cfg], timeout=90),
        }
    )
    assert res["train"].code == 0, res["train"]
    assert json.loads(res["train"].out)["status"] == "completed"
    assert res["inspect"].code == 0 and "Residual" in res["inspect"].out + res["inspect"].err, res["inspect"]
