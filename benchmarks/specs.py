"""What each workload computes, written once as nncli layer specs; both workers build from these.

Layer dicts use nncli's YAML names and hyper-parameters; ``workloads_torch`` translates them into the
equivalent ``torch.nn`` modules.
"""

from __future__ import annotations

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS_CONFIG = os.path.join(ROOT, "configs", "digits_cnn.yaml")
MNIST1D_CONFIG = os.path.join(ROOT, "configs", "mnist1d_cnn.yaml")

RELU = {"type": "ReLU"}

#: until configs/digits_cnn.yaml exists: a small CNN on the 8×8 digits, batch 64
DIGITS_FALLBACK = {
    "kind": "train",
    "input_shape": [1, 8, 8],
    "batch": 64,
    "optimizer": {"type": "sgd", "lr": 0.05},
    "layers": [
        {"type": "Conv2D", "out": 16, "kernel": 3},
        RELU,
        {"type": "Conv2D", "out": 32, "kernel": 3},
        RELU,
        {"type": "Flatten"},
        {"type": "MM", "out": 10},
    ],
    "note": "stand-in CNN (configs/digits_cnn.yaml not found)",
}


def _cifar_cnn(pool: str) -> dict:
    """3×32×32 → Conv2D 32 (3×3, same) → ReLU → pool 2 → Conv2D 64 → ReLU → pool 2 → MM 10."""
    return {
        "kind": "train",
        "input_shape": [3, 32, 32],
        "batch": 64,
        "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9},
        "layers": [
            {"type": "Conv2D", "out": 32, "kernel": 3, "padding": 1},
            RELU,
            {"type": pool, "kernel": 2},
            {"type": "Conv2D", "out": 64, "kernel": 3, "padding": 1},
            RELU,
            {"type": pool, "kernel": 2},
            {"type": "Flatten"},
            {"type": "MM", "out": 10},
        ],
        "note": f"3×32×32, conv 32, {pool} 2, conv 64, {pool} 2, MM 10, SGD momentum; batch 64",
    }


def _three_stage_cnn() -> dict:
    """3×32×32 → three stages of Conv2D (5×5 then 3×3, 16, 32, 48 channels) → ReLU → AvgPool2D 2,
    then MM 10; Adam, batch 32. Its first layer (C·k² = 75, N·H·W = 32K) is the shape where im2col's
    copy costs as much as the product."""
    layers: list[dict] = []
    for out, k in ((16, 5), (32, 3), (48, 3)):
        layers += [{"type": "Conv2D", "out": out, "kernel": k}, RELU, {"type": "AvgPool2D", "kernel": 2}]
    return {
        "kind": "train",
        "input_shape": [3, 32, 32],
        "batch": 32,
        "optimizer": {"type": "adam", "lr": 0.001},
        "layers": layers + [{"type": "Flatten"}, {"type": "MM", "out": 10}],
        "note": "3×32×32, conv 16 k5, conv 32 k3, conv 48 k3, each ReLU + avg 2, MM 10, Adam; batch 32",
    }


def _ln_mlp() -> dict:
    """256 → (MM 512, LN per feature, ReLU) × 2 → MM 10: a LayerNorm-heavy MLP."""
    block = [{"type": "MM", "out": 512}, {"type": "LN", "affine": "per_feature"}, RELU]
    return {
        "kind": "train",
        "input_shape": [256],
        "batch": 256,
        "optimizer": {"type": "adam", "lr": 0.001},
        "layers": block + block + [{"type": "MM", "out": 10}],
        "note": "256 → (MM 512, LN per feature, ReLU) × 2 → MM 10, Adam; batch 256",
    }


SPECS: dict[str, dict] = {
    "mlp": {
        "kind": "train",
        "input_shape": [784],
        "batch": 128,
        "optimizer": {"type": "sgd", "lr": 0.01},
        "layers": [
            {"type": "MM", "out": 256},
            RELU,
            {"type": "MM", "out": 256},
            RELU,
            {"type": "MM", "out": 10},
        ],
        "note": "784-256-256-10 ReLU, CE, SGD; batch 128",
    },
    "conv2d": {
        "kind": "fwd_bwd",
        "input_shape": [16, 28, 28],
        "batch": 64,
        "layers": [{"type": "Conv2D", "out": 32, "kernel": 3, "padding": 1}],
        "note": "16→32, 28×28, k3 p1; batch 64",
    },
    "digits_cnn": DIGITS_FALLBACK,
    "conv1d": {
        "kind": "fwd_bwd",
        "input_shape": [8, 256],
        "batch": 64,
        "layers": [{"type": "Conv1D", "out": 16, "kernel": 5, "padding": 2}],
        "note": "8→16, L 256, k5 p2; batch 64",
    },
    "mnist1d_cnn": {
        "kind": "train",
        "input_shape": [1, 40],
        "batch": 100,
        "optimizer": {"type": "adam", "lr": 0.01},
        "layers": [
            {"type": "Conv1D", "out": 25, "kernel": 5, "stride": 2, "padding": 1},
            RELU,
            {"type": "Conv1D", "out": 25, "kernel": 3, "stride": 2, "padding": 1},
            RELU,
            {"type": "Conv1D", "out": 25, "kernel": 3, "stride": 2, "padding": 1},
            RELU,
            {"type": "Flatten"},
            {"type": "MM", "out": 10},
        ],
        "note": "paper CNN 1→25→25→25, Linear(125→10), Adam; batch 100",
    },
    "ln": {
        "kind": "fwd_bwd",
        "input_shape": [512],
        "batch": 8192,
        "layers": [{"type": "LN", "affine": "per_feature"}],
        "note": "8192×512, per-feature affine (torch LayerNorm(512))",
    },
    "ln_mlp": _ln_mlp(),
    "cifar_cnn_max": _cifar_cnn("MaxPool2D"),
    "cifar_cnn_avg": _cifar_cnn("AvgPool2D"),
    "cnn3_avg": _three_stage_cnn(),
    "maxpool2d": {
        "kind": "fwd_bwd",
        "input_shape": [32, 32, 32],
        "batch": 64,
        "layers": [{"type": "MaxPool2D", "kernel": 2}],
        "note": "32×32×32 → 16×16, k2 (the CIFAR CNN's first pooling); batch 64",
    },
}

#: the order of the table; "e2e" (nncli train vs a torch loop) is handled by e2e.py
ORDER = [
    "mlp",
    "conv2d",
    "digits_cnn",
    "conv1d",
    "mnist1d_cnn",
    "ln",
    "ln_mlp",
    "cifar_cnn_max",
    "cifar_cnn_avg",
    "cnn3_avg",
    "maxpool2d",
]
#: nncli / PyTorch at each library's better thread count: at most 1 everywhere
TARGETS = {
    "mlp": 1.0,
    "conv2d": 1.0,
    "digits_cnn": 1.0,
    "conv1d": 1.0,
    "mnist1d_cnn": 1.0,
    "ln": 1.0,
    "ln_mlp": 1.0,
    "cifar_cnn_max": 1.0,
    "cifar_cnn_avg": 1.0,
    "cnn3_avg": 1.0,
    "maxpool2d": 1.0,
    "e2e": 1.0,
}


def digits_spec() -> dict:
    """The digits CNN (layers and optimiser) from configs/digits_cnn.yaml when it exists, else the
    stand-in above; the batch stays 64 either way so that the row measures the same amount of work."""
    if not os.path.exists(DIGITS_CONFIG):
        return DIGITS_FALLBACK
    with open(DIGITS_CONFIG) as f:
        cfg = yaml.safe_load(f)
    opt = {"type": "sgd", "lr": 0.1, **(cfg.get("optimizer") or {})}
    desc = ", ".join(f"{k} {v}" for k, v in opt.items() if k != "type")
    return {
        "kind": "train",
        "input_shape": cfg["model"]["input_shape"],
        "layers": cfg["model"]["layers"],
        "batch": 64,
        "optimizer": opt,
        "note": f"configs/digits_cnn.yaml, {opt['type']} ({desc}); batch 64",
    }


def optimizer_slots(opt: dict) -> int:
    """Buffers per parameter: Adam keeps m and v; SGD a momentum buffer when μ > 0."""
    if opt["type"] == "adam":
        return 2
    return 1 if opt.get("momentum", 0) > 0 else 0
