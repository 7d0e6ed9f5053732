"""skopt_nn: PyTorch networks as scikit-learn estimators.

A network's whole training and compression recipe (optimizer, learning-rate
schedule, pruning, knowledge distillation, early stopping) is a set of
ordinary sklearn hyperparameters, tuned by any sklearn or scikit-optimize
search.
"""

import importlib

from ._version import __version__

# Public name -> the module that defines it. The names are loaded on first
# use (PEP 562), so that ``import skopt_nn.cli`` and ``skopt-nn --help`` do
# not pay for importing torch and scikit-learn; ``from skopt_nn import X``
# works as usual. tests/test_architecture.py reads this table as imports of
# the package, so the import graph it checks stays complete.
_LAZY_EXPORTS = {
    "DivergenceError": ".training._base",
    "search_progress": ".search._progress",
    "Distillation": ".specs.distillation",
    "NNClassifier": ".estimators",
    "NNRegressor": ".estimators",
    "load": ".persistence.io",
    "save": ".persistence.io",
    "CNN": ".specs.modules",
    "MLP": ".specs.modules",
    "TorchModule": ".specs.modules",
    "Transformer": ".specs.transformer",
    "LoRA": ".specs.transformer",
    "TextEmbedder": ".embedding",
    "export_onnx": ".persistence.onnx_export",
    "Pruning": ".specs.pruning",
    "Quantization": ".specs.quantization",
    "LRSchedule": ".specs.schedules",
    "default_space": ".search._engines",
    "make_search": ".search._engines",
    "Categorical": ".search.spaces",
    "Integer": ".search.spaces",
    "Real": ".search.spaces",
    "SearchSpace": ".search.spaces",
    "get_scorer": ".search.scoring",
    "get_scorer_names": ".search.scoring",
    "pareto_front": ".search.pareto",
    "within": ".search.pareto",
}

__all__ = [
    "NNClassifier",
    "NNRegressor",
    "MLP",
    "CNN",
    "TorchModule",
    "Transformer",
    "LoRA",
    "TextEmbedder",
    "LRSchedule",
    "Pruning",
    "Quantization",
    "Distillation",
    "SearchSpace",
    "Real",
    "Integer",
    "Categorical",
    "make_search",
    "default_space",
    "get_scorer",
    "get_scorer_names",
    "pareto_front",
    "within",
    "save",
    "load",
    "export_onnx",
    "search_progress",
    "DivergenceError",
    "__version__",
]


def __getattr__(name):
    try:
        module = _LAZY_EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_EXPORTS))
