"""nncli: the CS229 deep-learning notes' modules, with explicit backward functions, trained from YAML.

The Python API; each ``nncli`` command is a thin wrapper over one of these calls::

    import nncli
    outcome = nncli.train("configs/mnist1d_cnn.yaml", overrides=["optimizer.lr=0.005"], runs_dir="runs")
    outcome.status, outcome.run_dir, outcome.summary      # "completed", the run folder, summary.json
    nncli.evaluate(outcome.run_dir)                       # {"loss": ..., "acc": ..., "split": "test", ...}
    run = nncli.load_run(outcome.run_dir)                 # .config, .chain (best weights), .standardization
    run.predict(x)                                        # class ids (raw scores: run.scores(x))
    nncli.gradcheck("configs/mnist1d_cnn.yaml").passed    # every backward against central differences
    nncli.inspect("configs/mnist1d_cnn.yaml").summary     # shapes, parameters, MACs, memory

And the pieces underneath::

    cfg = nncli.load_config("configs/mnist1d_cnn.yaml", overrides=["optimizer.lr=0.005"])
    chain = nncli.build_chain(cfg, dtype="float64")      # a Chain of modules with its loss
    J, h = chain.loss_and_grad(x, y)                      # forward (F), loss, backward (§7.4.2)
    for name, param, grad in chain.parameters(): ...      # "0.weight", W, ∂J/∂W
    state = chain.state_dict()                            # named like torch.nn.Sequential's
"""

from nncli import _process  # noqa: F401  (first: before numpy loads OpenBLAS; see the module)
from nncli._version import __version__
from nncli.config.build import build_chain
from nncli.config.load import config_from_dict, load_config
from nncli.core import layers as modules  # noqa: F401  (registers every module and loss)
from nncli.core import losses  # noqa: F401  (registers every module and loss)
from nncli.core.chain import Chain
from nncli.core.registry import losses as loss_registry
from nncli.core.registry import modules as module_registry
from nncli.diagnostics.gradcheck import check_chain, check_loss, check_module
from nncli.diagnostics.gradcheck_config import GradcheckResult, gradcheck
from nncli.diagnostics.inspection import Inspection, inspect
from nncli.runs.evaluate import evaluate
from nncli.runs.loaded_run import LoadedRun, load_run
from nncli.runs.train_run import TrainOutcome, train
from nncli.training import optimizers, schedules, sources  # noqa: F401  (register optimisers, schedules, data sources)

__all__ = [
    "__version__",
    "train",
    "evaluate",
    "load_run",
    "gradcheck",
    "inspect",
    "TrainOutcome",
    "LoadedRun",
    "GradcheckResult",
    "Inspection",
    "load_config",
    "config_from_dict",
    "build_chain",
    "Chain",
    "check_chain",
    "check_loss",
    "check_module",
    "module_registry",
    "loss_registry",
]
