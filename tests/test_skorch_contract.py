"""The skorch internals that the lean batch loop (training/_loop.py) stands in for.

``LeanLoop`` re-implements a few of skorch's per-batch methods without their
general-purpose work. If skorch changes one of them, our copy would go on
running the old logic: silently slower, or silently different. These tests
make such a change fail loudly instead: the installed skorch must be in the
range pyproject.toml allows, the methods we mirror must be the ones we read,
and a fit through the lean loop must equal a fit through skorch's own.
"""

import ast
import hashlib
import inspect
import pathlib
import re
import textwrap

import numpy as np
import pytest
import skorch
import torch
from skorch import NeuralNet
from skorch.history import History
from torch import nn

from skopt_nn.training._loop import LeanLoop

# Digests of skorch 1.4's source (docstrings left out) of every method that
# LeanLoop overrides, copies or calls in place of the public path.
MIRRORED = {
    "train_step": "7d7d59d9094b97cc",
    "run_single_epoch": "f18baf616e27aaea",
    "_set_training": "75f1bbb766163297",
    "on_batch_begin": "b6ce922c074188f1",
    "infer": "ac04f866c44aca29",
    "get_loss": "ac4635dc0e9baaf1",
    "notify": "84209a0b21fc70f8",
    "get_default_callbacks": "97509ea2c5b93592",
    "train_step_single": "8c9d4ef4b9331e38",
    "_step_optimizer": "34f61f560f0bf824",
    "_zero_grad_optimizer": "6b351a2055bcce50",
    "get_train_step_accumulator": "957392a845b200b2",
    "History.new_batch": "ce8ab4569baeaaf6",
}


def _digest(function):
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        tree.body[0].body = body[1:]
    return hashlib.sha256(ast.dump(tree.body[0]).encode()).hexdigest()[:16]


def test_installed_skorch_is_within_the_bound_in_pyproject():
    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    low, high = re.search(r'"skorch>=([\d.]+),<(\d+)"', text).groups()
    major = int(skorch.__version__.split(".")[0])
    assert int(low.split(".")[0]) <= major < int(high), (
        f"skorch {skorch.__version__} is outside the range pyproject.toml allows (>={low},<{high})"
    )


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_skorch_methods_mirrored_by_the_lean_loop_are_unchanged(name):
    owner, _, attr = name.rpartition(".")
    function = getattr(History if owner == "History" else NeuralNet, attr)
    assert _digest(function) == MIRRORED[name], (
        f"skorch {skorch.__version__} changed {name}, which skopt_nn.training._loop.LeanLoop "
        "mirrors or bypasses. Read the new code, bring LeanLoop in line with it, then update "
        "the digest in tests/test_skorch_contract.py."
    )


class _Lean(LeanLoop, NeuralNet):
    pass


def _fit(cls):
    torch.manual_seed(0)
    X = torch.randn(90, 5)
    y = (X[:, 0] > 0).long()
    net = cls(
        nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=3,
        batch_size=32,
        train_split=None,
        iterator_train__shuffle=False,
        verbose=0,
    )
    return net.fit(X, y)


def test_the_lean_loop_trains_what_skorchs_loop_trains():
    lean, plain = _fit(_Lean), _fit(NeuralNet)
    for a, b in zip(lean.module_.parameters(), plain.module_.parameters()):
        torch.testing.assert_close(a, b)
    keys = ("train_loss", "train_batch_count")
    assert [[row[k] for k in keys] for row in lean.history] == [[row[k] for k in keys] for row in plain.history]
    np.testing.assert_array_equal(
        [b["train_batch_size"] for b in lean.history[-1]["batches"]],
        [b["train_batch_size"] for b in plain.history[-1]["batches"]],
    )
