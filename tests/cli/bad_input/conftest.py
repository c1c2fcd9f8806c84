"""Bad input through the real command line: every case exits 2 with one clear line and leaves nothing.

Each case runs nncli in a process of its own: the batches of refusals in processes forked from one
that has imported nncli once (``forked_cli``), the rest as ``python -m nncli``; stderr is a file or a
pipe, not a terminal (as in a script or CI log). Checked: exit code 2, the message names the problem
and the place (``file:line:col`` and the field where there is one), no traceback, nothing on stdout,
no run folder under ``--runs-dir``. The processes run a few at a time; the models are tiny (spirals,
a few steps).

One theme per file: configs and data files (``test_configs_and_data_files``), inputs too large for
memory (``test_memory_limits``), damaged and foreign checkpoints (``test_damaged_checkpoints``),
hostile numbers, sizes, nesting and files (``test_hostile_values_and_files``), updates that
overflow (``test_overflowing_updates``). What they import by name is in ``tests/bad_inputs.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_inputs import Unpickled


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
