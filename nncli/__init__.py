"""nncli: the CS229 deep-learning notes' modules, with explicit backward functions, trained from YAML.

The Python API in a few names::

    import nncli
    cfg = nncli.load_config("configs/mnist1d_cnn.yaml", overrides=["optimizer.lr=0.005"])
    chain = nncli.build_chain(cfg, dtype="float64")      # a Chain of modules with its loss
    J, h = chain.loss_and_grad(x, y)                      # forward (F), loss, backward (§7.4.2)
    for name, param, grad in chain.parameters(): ...      # "0.weight", W, ∂J/∂W
    state = chain.state_dict()                            # named like torch.nn.Sequential's
"""

from nncli._version import __version__  # noqa: F401
from nncli.config.build import build_chain  # noqa: F401
from nncli.config.load import config_from_dict, load_config  # noqa: F401
from nncli.core import layers as modules  # noqa: F401  (registers every module and loss)
from nncli.core import losses  # noqa: F401  (registers every module and loss)
from nncli.core.chain import Chain  # noqa: F401
from nncli.core.registry import losses as loss_registry  # noqa: F401
from nncli.core.registry import modules as module_registry  # noqa: F401
from nncli.diagnostics.gradcheck import check_chain, check_loss, check_module  # noqa: F401
from nncli.training import data, optimizers, schedules  # noqa: F401  (register optimisers, schedules, data sources)
