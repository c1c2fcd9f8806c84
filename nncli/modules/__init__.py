"""Importing this package registers every module type with ``nncli.registry.modules``."""
from . import activations, linear  # noqa: F401

from .base import HParams, Module  # noqa: F401
