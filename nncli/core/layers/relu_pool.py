"""A ReLU and the pooling after it as one module, which a chain runs in place of the declared pair
(``Module.cheaper_pair``, ``core.chain.cheaper_plan``) while no hook is registered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nncli.core.layers.activations import Sigma
from nncli.core.module import Module

if TYPE_CHECKING:
    from nncli.core.layers.pool import PoolND


def is_relu(m: Module) -> bool:
    """Whether ``m`` is a plain ReLU (σ with fn relu)."""
    return isinstance(m, Sigma) and m.cfg.fn == "relu"


class ReluPool(Module):
    """ReLU then a pooling, computed by the pooling block by block, in cache (average pooling: the
    ReLU first, into the padded buffer or a block of scratch; max pooling: the ReLU after the
    maximum, on 1/K of the elements, as the two commute; ``PoolND.cheaper_pair``). Same values as
    the two modules in turn. Never declared in a config, so it has no name, hyper-parameters or
    state of its own but the ReLU's mask."""

    batch_split = "gains"

    def __init__(self, pool: PoolND):
        super().__init__()
        self.pool = pool

    def forward(self, z):
        u, self._mask = self.pool.relu_forward(z)
        return u

    def backward(self, v):
        return self.pool.relu_backward(v, self._mask)
