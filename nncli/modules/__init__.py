"""Importing this package registers every module type with ``nncli.registry.modules``."""
from . import activations, linear  # noqa: F401

from .base import HParams, Module  # noqa: F401
from . import norm  # noqa: F401
from . import shape  # noqa: F401
from . import dropout  # noqa: F401
from . import residual  # noqa: F401
from . import conv, pool  # noqa: F401
