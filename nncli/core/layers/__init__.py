"""Importing this package registers every module type with ``nncli.core.registry.modules``."""

from nncli.core.layers import (
    activations,  # noqa: F401
    conv,  # noqa: F401
    dropout,  # noqa: F401
    linear,  # noqa: F401
    norm,  # noqa: F401
    pool,  # noqa: F401
    residual,  # noqa: F401
    shape,  # noqa: F401
)
from nncli.core.module import HParams, Module  # noqa: F401
