"""Bad input through the real command line: every case exits 2 with one clear line and leaves nothing.

Each case runs nncli in a process of its own: the batches of refusals in processes forked from one
that has imported nncli once (``forked_cli``), the rest as ``python -m nncli``; stderr is a file or a
pipe, not a terminal (as in a script or CI log). Checked: exit code 2, the message names the problem
and the place (``file:line:col`` and the field where there is one), no traceback, nothing on stdout,
no run folder under ``--runs-dir``. The processes run a few at a time; the models are tiny (spirals,
a few steps).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from forked_cli import run_forked
from support import assert_refused, folder_listing, run_many, run_nncli

GOOD = """\
name: tiny
seed: 0
model:
  input_shape: [2]
  layers:
    - {type: MM, out: 8}
    - {type: Tanh}
    - {type: MM, out: 3}
loss: cross_entropy
data: {source: spirals, n_samples: 60, classes: 3, batch_size: 20}
optimizer: {type: sgd, lr: 0.1}
train: {steps: 4, log_every: 2, eval_every: 2}
"""
#: a 4-feature, 3-class model for the data-file cases (data.npz / data.csv replace the source)
FILE_CFG = GOOD.replace("input_shape: [2]", "input_shape: [4]").replace(
    "{source: spirals, n_samples: 60, classes: 3, batch_size: 20}", "{source: DATA, batch_size: 10}"
)


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


class Unpickled:
    """Unpickling this object opens (creates) ``marker``; loading it must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- config cases: (name, config text, expected texts, the line the error must point at) -------------
def config_cases(work: Path) -> dict[str, tuple[str, tuple[str, ...], str | None]]:
    marker = work / "tag-ran"
    conv = GOOD.replace("input_shape: [2]", "input_shape: [1, 6]").replace(
        "{type: MM, out: 8}", "{type: Conv1D, out: 2, kernel: 3}\n    - {type: Flatten}"
    )
    big = edit(
        GOOD,
        "{type: MM, out: 3}",
        "{type: MM, out: 100000}\n    - {type: MM, out: 30000}\n    - {type: MM, out: 3}",
    )
    return {
        "yaml syntax error": (
            edit(GOOD, "input_shape: [2]", "input_shape: [2"),
            ("YAML syntax error",),
            None,
        ),
        "duplicate key": (GOOD + "seed: 4\n", ("duplicate key 'seed'", "line 2"), "seed: 4"),
        "python tag": (
            edit(GOOD, "lr: 0.1", f"lr: !!python/object/apply:os.system ['touch {marker}']"),
            ("!!python/object/apply:os.system", "optimizer.lr"),
            "lr: !!python",
        ),
        "unknown layer type": (
            edit(GOOD, "type: MM, out: 8", "type: Lineer, out: 8"),
            ("model.layers[0].type", "unknown layer type 'Lineer'", "did you mean 'linear'"),
            "Lineer",
        ),
        "misspelled section": (
            edit(GOOD, "optimizer:", "optimiser:"),
            ("unknown key 'optimiser'", "did you mean 'optimizer'"),
            "optimiser",
        ),
        "misspelled layer key": (
            edit(conv, "kernel: 3", "kernal: 3"),
            ("model.layers[0].kernal", "did you mean 'kernel'"),
            "kernal",
        ),
        "wrong type": (
            edit(GOOD, "out: 8", 'out: "ten"'),
            ("model.layers[0].out", "expected an integer", "'ten'"),
            "ten",
        ),
        "quoted lr": (
            edit(GOOD, "lr: 0.1", 'lr: "0.1"'),
            ("optimizer.lr", "expected a number", "string '0.1'"),
            "lr:",
        ),
        "negative lr": (edit(GOOD, "lr: 0.1", "lr: -0.1"), ("optimizer.lr", "-0.1"), "lr:"),
        "unknown optimizer": (
            edit(GOOD, "type: sgd", "type: adamw"),
            ("optimizer.type", "'adamw'", "sgd", "adam"),
            "adamw",
        ),
        "unknown schedule": (
            GOOD + "schedule: {type: cosinus}\n",
            ("schedule.type", "did you mean 'cosine'"),
            "cosinus",
        ),
        "even kernel with the notes' padding": (
            edit(conv, "kernel: 3", "kernel: 4"),
            ("model.layers[0]", "kernel must be odd", "padding: same"),
            "Conv1D",
        ),
        "Conv2D after a flat MM": (
            edit(GOOD, "{type: Tanh}", "{type: Conv2D, out: 2, kernel: 3}"),
            ("model.layers[1]", "Conv2D expects inputs of shape (C, H, W)", "(8,)"),
            "Conv2D",
        ),
        "output size not matching the loss": (
            edit(GOOD, "{type: MM, out: 3}", "{type: MM, out: 1}"),
            ("loss", "cross_entropy", "C ≥ 2", "(1,)"),
            "loss:",
        ),
        "empty layer list": (
            GOOD.replace(
                "    - {type: MM, out: 8}\n    - {type: Tanh}\n    - {type: MM, out: 3}\n", ""
            ).replace("layers:", "layers: []"),
            ("model.layers", "must not be empty"),
            "layers:",
        ),
        "control character": (
            edit(GOOD, "seed: 0", "seed: 0\x14"),
            ("YAML syntax error", "control character", "#x0014"),
            "seed:",
        ),
        "enormous model": (big, ("model.layers[3]", "parameters", "GiB", "limit"), "out: 30000"),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4))
    y = rng.integers(0, 3, 40)

    def npz(name, **arrays):
        np.savez(d / name, **arrays)

    npz("data.npz", x=x, y=y)
    npz("nan.npz", x=np.where(np.arange(40)[:, None] == 7, np.nan, x), y=y)
    npz("inf.npz", x=np.where(np.arange(40)[:, None] == 3, np.inf, x), y=y)
    npz("strings.npz", x=x.astype(str), y=y)
    npz("float_labels.npz", x=x, y=y + 0.5)
    npz("labels_out_of_range.npz", x=x, y=y + 3)
    npz("lengths.npz", x=x, y=y[:30])
    npz("wide.npz", x=rng.standard_normal((40, 5)), y=y)
    objects = np.empty(40, dtype=object)
    objects[:] = [Unpickled(d / "unpickled") for _ in range(40)]
    np.savez(d / "pickled.npz", x=objects, y=y)  # np.savez pickles object arrays
    (d / "empty.csv").write_text("")
    (d / "empty.npz").write_bytes(b"")
    (d / "ragged.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,3,0\n")
    (d / "words.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n1,two,3,4,1\n")
    (d / "notarun").mkdir()
    (d / "notarun" / "notes.txt").write_text("not a run")
    return d


@pytest.fixture(scope="module")
def results(work):
    calls, meta = {}, {}
    for i, (name, (text, expect, at)) in enumerate(config_cases(work).items()):
        cfg = work / f"cfg{i}.yaml"
        cfg.write_text(text)
        line = f":{line_of(text, at)}:" if at else ":"
        calls[name] = dict(args=["train", cfg, "--runs-dir", work / f"runs{i}", "--quiet"], cwd=work)
        meta[name] = (expect, f"{cfg}{line}", work / f"runs{i}")

    def file_case(name, data, expect, place="data", extra=()):
        """A config reading ``data``; ``place``: "data" (the error points at data.source), or a prefix."""
        i = len(calls)
        cfg = work / f"cfg{i}.yaml"
        cfg.write_text(FILE_CFG.replace("DATA", data))
        calls[name] = dict(args=["train", cfg, "--runs-dir", work / f"runs{i}", "--quiet", *extra], cwd=work)
        at = f"{cfg}:{line_of(FILE_CFG, 'source:')}:" if place == "data" else place
        meta[name] = (expect, at, work / f"runs{i}")

    file_case("missing config file", "data.npz", ("no such file",), place=str(work / "nope.yaml"))
    calls["missing config file"]["args"][1] = work / "nope.yaml"
    file_case("missing data file", "nope.npz", ("nope.npz", "not found"))
    file_case("empty csv", "empty.csv", ("empty.csv", "no data rows"))
    file_case("empty npz", "empty.npz", ("empty.npz", "not a readable .npz"))
    file_case("NaN in inputs", "nan.npz", ("nan.npz", "NaN or Inf", "index 7"))
    file_case("Inf in inputs", "inf.npz", ("inf.npz", "NaN or Inf", "index 3"))
    file_case("string inputs", "strings.npz", ("strings.npz", "inputs must be numeric"))
    file_case("a word in a csv", "words.csv", ("words.csv:3:", "column 2", "'two'", "not a number"))
    file_case("ragged csv rows", "ragged.csv", ("ragged.csv:3:", "expected 5 columns", "got 4"))
    file_case("float labels", "float_labels.npz", ("float_labels.npz", "whole numbers", "1.5 at index 0"))
    file_case("labels out of range", "labels_out_of_range.npz", ("labels_out_of_range.npz", "label"))
    file_case("x and y lengths differ", "lengths.npz", ("lengths.npz", "40 examples", "30"))
    file_case("pickled object array", "pickled.npz", ("pickled.npz", "dtype=object", "unpickling"))
    file_case("data shape not matching the model", "wide.npz", ("wide.npz", "(5,)", "input_shape", "[4]"))
    file_case(
        "misspelled --set path",
        "data.npz",
        ("optimizer.lrr", "did you mean 'optimizer.lr'"),
        place="<command line>: optimizer.lrr",
        extra=("--set", "optimizer.lrr=0.5"),
    )
    file_case(
        "--set value with a control character",
        "data.npz",
        ("seed=1", "not valid YAML", "#x0014"),
        place="<command line>",
        extra=("--set", "seed=1\x14"),
    )
    file_case(
        "--set value of the wrong type",
        "data.npz",
        ("train.steps", "'many'"),
        place="<command line>: train.steps",
        extra=("--set", "train.steps=many"),
    )
    calls["--resume on a folder that is not a run"] = dict(
        args=["train", "--resume", work / "notarun", "--runs-dir", work / "runs_resume", "--quiet"], cwd=work
    )
    meta["--resume on a folder that is not a run"] = (
        ("not a run folder",),
        str(work / "notarun"),
        work / "runs_resume",
    )
    return {name: (res, *meta[name]) for name, res in run_many(calls, run=run_forked).items()}


CASE_NAMES = list(config_cases(Path("/x"))) + [
    "missing config file",
    "missing data file",
    "empty csv",
    "empty npz",
    "NaN in inputs",
    "Inf in inputs",
    "string inputs",
    "a word in a csv",
    "ragged csv rows",
    "float labels",
    "labels out of range",
    "x and y lengths differ",
    "pickled object array",
    "data shape not matching the model",
    "misspelled --set path",
    "--set value with a control character",
    "--set value of the wrong type",
    "--resume on a folder that is not a run",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_refused_with_one_line_exit_2_and_no_run_folder(results, name):
    res, expect, place, runs = results[name]
    # a misspelled required key is two problems: the unknown key and the missing one
    problems = 2 if name == "misspelled layer key" else 1
    assert_refused(res, *expect, runs_dir=runs, place=place, problems=problems)
    assert (runs.parent / "notarun").exists()


def test_python_tag_ran_nothing_and_pickled_array_was_never_unpickled(results, work):
    assert results["python tag"][0].code == 2
    assert not (work / "tag-ran").exists()
    assert results["pickled object array"][0].code == 2
    assert not (work / "unpickled").exists()
    # the payload is live: unpickling it really creates the marker (so its absence above means something)
    probe = work / "probe"
    pickle.loads(pickle.dumps(Unpickled(probe))).close()
    assert probe.exists()


def _limit_memory():
    # 1.5 GiB of address space: the refused model's weights alone would need 11 GiB
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**29, 3 * 2**29))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS to bound memory")
def test_enormous_model_is_refused_before_any_allocation(work, tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text(config_cases(work)["enormous model"][0])
    res = run_nncli(
        "train",
        cfg,
        "--runs-dir",
        tmp_path / "runs",
        cwd=work,
        preexec_fn=_limit_memory,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert_refused(res, "3,000,0", "11.2 GiB in float32", "model.layers[3]", runs_dir=tmp_path / "runs")
    res = run_nncli(
        "inspect",
        cfg,
        cwd=work,
        preexec_fn=_limit_memory,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert_refused(res, "GiB", "model.layers[3]")


def test_messages_stay_on_one_line_however_long(work, tmp_path):
    # a deep path makes the message far wider than the 80 columns rich assumes without a terminal
    deep = tmp_path.joinpath(*["a_long_folder_name"] * 6)
    deep.mkdir(parents=True)
    cfg = deep / "cfg.yaml"
    text = edit(GOOD, "out: 8}", "out: 8, kernal: 3}")
    cfg.write_text(text)
    res = run_nncli("train", cfg, "--runs-dir", tmp_path / "runs", cwd=work)
    assert_refused(res, "model.layers[0].kernal", "allowed keys", place=f"{cfg}:{line_of(text, 'kernal')}:")


# -- checkpoints: eval on damaged or foreign checkpoints ---------------------------------------------


@pytest.fixture(scope="module")
def trained(work):
    """Two finished runs with different architectures."""
    cfgs = {"a": GOOD, "b": edit(GOOD, "out: 8}", "out: 5}")}
    calls = {}
    for name, text in cfgs.items():
        (work / f"{name}.yaml").write_text(text.replace("name: tiny", f"name: {name}"))
        calls[name] = dict(
            args=[
                "train",
                f"{name}.yaml",
                "--runs-dir",
                work / "runs_ok",
                "--quiet",
                "--json",
                "--no-curves",
            ],
            cwd=work,
        )
    out = {}
    for name, res in run_many(calls).items():
        assert res.code == 0, res
        out[name] = Path(json.loads(res.out)["run_dir"])
    return out


def damaged_copy(run: Path, dest: Path, damage) -> Path:
    shutil.copytree(run, dest)
    damage(dest / "checkpoints" / "best.safetensors")
    return dest


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_header(path: Path):
    data = bytearray(path.read_bytes())
    for i in range(10, 40):  # inside the JSON header that follows the 8-byte length
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def flip_data(path: Path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a weight byte: the header still parses, the checksum does not
    path.write_bytes(bytes(data))


def test_eval_refuses_damaged_and_foreign_checkpoints(trained, work, tmp_path):
    a, b = trained["a"], trained["b"]
    runs = {
        "truncated": damaged_copy(a, tmp_path / "truncated", truncate),
        "header": damaged_copy(a, tmp_path / "header", flip_header),
        "data": damaged_copy(a, tmp_path / "data", flip_data),
        "foreign": damaged_copy(
            a, tmp_path / "foreign", lambda p: shutil.copy(b / "checkpoints" / "best.safetensors", p)
        ),
        "missing": damaged_copy(a, tmp_path / "missing", os.remove),
    }
    before = {k: folder_listing(v) for k, v in runs.items()}
    res = run_many({k: dict(args=["eval", v, "--checkpoint", "best"], cwd=work) for k, v in runs.items()})
    ckpt = {k: str(v / "checkpoints" / "best.safetensors") for k, v in runs.items()}
    assert_refused(res["truncated"], ckpt["truncated"], "truncated or damaged")
    assert_refused(res["header"], ckpt["header"], "truncated or damaged")
    assert_refused(res["data"], ckpt["data"], "checksum mismatch")
    assert_refused(res["foreign"], ckpt["foreign"], "does not match the model's architecture")
    assert_refused(res["missing"], ckpt["missing"], "not found")
    for k, v in runs.items():
        assert folder_listing(v) == before[k], k  # eval never writes into the run
    # the undamaged run still evaluates
    ok = run_nncli("eval", a, "--json", cwd=work)
    assert ok.code == 0 and "acc" in json.loads(ok.out), ok


# -- inputs too large for memory: refused with their size, never a MemoryError traceback ------------

HUGE_INPUT = """\
model:
  input_shape: [1, SIDE, SIDE]
  layers:
    - {type: MaxPool2D, kernel: POOL}
    - {type: Flatten}
    - {type: MM, out: 2}
loss: cross_entropy
data: {source: spirals, classes: 2}
"""
LIMITED = dict(preexec_fn=_limit_memory, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})


def test_one_example_larger_than_memory_is_refused_by_every_command(tmp_path):
    # 10¹⁰ values per example: few parameters, but not even one example fits
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "100000").replace("POOL", "1000"))
    runs = {
        " ".join(map(str, argv)): run_nncli(*argv, cwd=tmp_path, **LIMITED)
        for argv in (
            ("inspect", cfg),
            ("inspect", cfg, "--trace"),
            ("gradcheck", cfg),
            ("train", cfg, "--runs-dir", tmp_path / "runs"),
        )
    }
    for res in runs.values():
        assert_refused(
            res,
            "model.input_shape",
            "(1, 100000, 100000)",
            "10,000,000,000 values",
            "GiB",
            place=f"{cfg}:2:",
            runs_dir=tmp_path / "runs",
        )


def test_gradcheck_batch_larger_than_memory_is_a_user_error(tmp_path):
    # 4·10⁸ values per example (1.6 GB in float32) passes the per-example limit; a float64 batch does not fit
    cfg = tmp_path / "big.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "20000").replace("POOL", "200"))
    res = run_nncli("gradcheck", cfg, "--samples", "1", cwd=tmp_path, **LIMITED)
    assert_refused(res, "model.input_shape", "GiB", place=f"{cfg}:2:")


def test_inspect_trace_batch_larger_than_memory_is_a_user_error(tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "20000").replace("POOL", "200"))
    res = run_nncli("inspect", cfg, "--trace", cwd=tmp_path, **LIMITED)
    assert_refused(res, "model.input_shape", "GiB", place=f"{cfg}:2:")


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


# -- divergence: no checkpoint ever holds NaN/Inf, and the message says which one is kept ---------------


def checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for f in sorted((run / "checkpoints").glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return out


def test_an_overflowing_update_stops_before_a_nan_checkpoint_is_written(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(GOOD)
    every = ("--set", "train.eval_every=1", "--set", "train.steps=6")
    res = run_many(
        {
            # lr 0.1 for two steps, then 1e39: Adam's update overflows float32 at step 3
            "adam lr 1e39": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "a",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.type=adam",
                    "--set",
                    "schedule={type: step, step_size: 2, gamma: 1e40}",
                ]
            ),
            "weight decay 1e39": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "b",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.weight_decay=1e39",
                ]
            ),
            "ignore": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "c",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.weight_decay=1e39",
                    "--set",
                    "train.on_nonfinite=ignore",
                ]
            ),
        }
    )
    adam, wd, ignore = res["adam lr 1e39"], res["weight decay 1e39"], res["ignore"]
    assert adam.code == 3, adam
    assert "the update of step 3 made parameter" in adam.err and "overflowed float32" in adam.err, adam
    assert "the last good checkpoint (step 2) is kept" in adam.err, adam
    assert json.loads(adam.out)["steps"] == 2
    assert (
        wd.code == 3 and "no checkpoint had been written yet" in wd.err and "weight decay 1e+39" in wd.err
    ), wd
    assert ignore.code == 0, ignore
    for r in (adam, wd, ignore):
        run = Path(json.loads(r.out)["run_dir"])
        arrays = checkpoint_arrays(run)
        assert all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f"), (
            r,
            sorted(arrays),
        )
    assert checkpoint_arrays(Path(json.loads(adam.out)["run_dir"]))  # step 2's checkpoint is there


def test_finite_float32_gradients_whose_norm_overflows_do_not_diverge(tmp_path):
    # ‖g‖² ≈ 5·(1.5e19)² > 3.4e38 in float32, every gradient entry finite
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.standard_normal((40, 4)), y=np.full((40, 1), 1.5e19))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {input_shape: [4], layers: [{type: MM, out: 1}]}\nloss: squared\n"
        "data: {source: big.npz, batch_size: 1}\noptimizer: {type: sgd, lr: 1e-45}\n"
        "train: {steps: 2, eval_every: 1}\n"
    )
    for extra in ((), ("--set", "train.clip_grad_norm=1.0")):
        res = run_nncli(
            "train", cfg, "--runs-dir", tmp_path / "runs", "--quiet", "--json", *extra, cwd=tmp_path
        )
        assert res.code == 0 and json.loads(res.out)["status"] == "completed", res
