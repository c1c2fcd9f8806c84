"""``nncli eval`` on truncated, altered, foreign and missing checkpoints: one line naming the file,
exit 2, nothing written into the run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from bad_inputs import GOOD, edit
from support import assert_refused, folder_listing, run_many, run_nncli


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
