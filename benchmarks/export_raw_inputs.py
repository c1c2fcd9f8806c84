"""Test accuracy of a run's ONNX export fed raw inputs, against ``nncli predict`` on the same rows.

    python benchmarks/export_raw_inputs.py                               # configs/digits_mlp.yaml, seed 0
    python benchmarks/export_raw_inputs.py --config configs/digits_cnn.yaml --runs-dir /tmp/runs

Trains the config (a real ``nncli.train`` into ``--runs-dir``), rebuilds its test split without
standardisation (the raw rows a user has), and scores on them: the run itself (``LoadedRun.predict``,
what ``nncli predict`` computes), the default ONNX export (preprocessing in the graph) and the
``--network-only`` export (the bare network, which expects standardised inputs) in onnxruntime.
Prints the three accuracies and how many predictions differ from nncli's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import nncli
from nncli.export import export_run
from nncli.training.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "digits_mlp.yaml"))
    parser.add_argument("--runs-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs_dir or tmp)
        outcome = nncli.train(args.config, runs_dir=runs, raise_errors=True)
        run = nncli.load_run(outcome.run_dir)
        cfg = run.config
        raw = load_dataset(
            cfg.data.model_copy(update={"standardize": False}),
            input_shape=tuple(cfg.model.input_shape),
            loss=run.chain.loss,
            seed=cfg.seed,
        ).test
        want = run.predict(raw.x)
        print(f"{Path(args.config).name}: {len(raw.x)} raw test rows, run {outcome.run_dir.name}")
        print(f"  nncli predict                 accuracy {np.mean(want == raw.y):.2%}")
        for label, bare in (("ONNX export (default)", False), ("ONNX export --network-only", True)):
            path = export_run(
                outcome.run_dir, "onnx", out=runs / f"model-{int(bare)}.onnx", network_only=bare
            )
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(["output"], {"input": raw.x.astype(np.float32)})[0].argmax(axis=1)
            print(
                f"  {label:<29} accuracy {np.mean(got == raw.y):.2%}, "
                f"{int(np.sum(got != want))} predictions differ from nncli's"
            )


if __name__ == "__main__":
    main()
