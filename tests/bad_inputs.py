"""What the bad-input tests (``tests/cli/bad_input/``) share: the good config they spoil, the edits
that spoil it, the config cases, and the memory limit the allocation cases run under.

    GOOD, FILE_CFG            a tiny spirals config; the same with a 4-feature data file (DATA)
    edit(text, old, new)      one replacement, which must apply
    line_of(text, needle)     the 1-based line an error must point at
    config_cases(work)        name → (config text, expected texts, the line's needle or None)
    LIMITED                   run_nncli keywords: 1.5 GiB of address space, one BLAS thread
"""

from __future__ import annotations

import resource
from pathlib import Path

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


def limit_memory():
    # 1.5 GiB of address space: the refused model's weights alone would need 11 GiB
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**29, 3 * 2**29))


LIMITED = dict(preexec_fn=limit_memory, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
