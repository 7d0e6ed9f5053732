"""skopt_nn: PyTorch networks as scikit-learn estimators.

A network's whole training and compression recipe (optimizer, learning-rate
schedule, pruning, knowledge distillation, early stopping) is a set of
ordinary sklearn hyperparameters, tuned by any sklearn or scikit-optimize
search.
"""

from ._base import DivergenceError
from ._progress import search_progress
from .distillation import Distillation
from .estimators import NNClassifier, NNRegressor
from .io import load, save
from .modules import CNN, MLP, TorchModule
from .onnx_export import export_onnx
from .pruning import Pruning
from .schedules import LRSchedule
from .search import default_space, make_search
from .spaces import Categorical, Integer, Real, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "NNClassifier",
    "NNRegressor",
    "MLP",
    "CNN",
    "TorchModule",
    "LRSchedule",
    "Pruning",
    "Distillation",
    "SearchSpace",
    "Real",
    "Integer",
    "Categorical",
    "make_search",
    "default_space",
    "save",
    "load",
    "export_onnx",
    "search_progress",
    "DivergenceError",
    "__version__",
]
