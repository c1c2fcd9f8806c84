"""nncli: the CS229 deep-learning notes' modules, with explicit backward functions, trained from YAML."""
__version__ = "0.1.0"

from . import losses, modules  # noqa: F401  (registers every module and loss)
from .chain import Chain  # noqa: F401
from .registry import losses as loss_registry  # noqa: F401
from .registry import modules as module_registry  # noqa: F401
