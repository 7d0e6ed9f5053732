"""The CNN spec for 1-D signals, 2-D images and 3-D volumes stored as flat rows."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skopt_nn import CNN, NNClassifier, Pruning
from skopt_nn.specs._shrink import analyse, shrink


@pytest.fixture(scope="module")
def signals():
    """Two-channel signals of length 32: class = which of three frequencies they carry."""
    rng = np.random.RandomState(0)
    n, length = 240, 32
    y = rng.randint(0, 3, n)
    t = np.arange(length) / length
    freq = np.array([1.0, 3.0, 6.0])[y][:, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(2 * np.pi * freq * t + phase)
    X = np.stack([wave, np.cos(2 * np.pi * freq * t + phase)], axis=1)
    X += 0.3 * rng.normal(size=X.shape)
    return X.reshape(n, -1).astype(np.float32), y


def _layers(module, kind):
    return [m for m in module.modules() if isinstance(m, kind)]


def test_1d_cnn_has_conv1d_layers_and_learns(signals):
    X, y = signals
    clf = NNClassifier(
        CNN(input_shape=(2, 32), channels=(8, 8), kernel_size=5, hidden=16),
        lr=0.01, max_epochs=15, batch_size=32, random_state=0,
    ).fit(X[:180], y[:180])

    convs = _layers(clf.module_, nn.Conv1d)
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 8), (8, 8)]
    assert not _layers(clf.module_, nn.Conv2d)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X[180:], y[180:]) > 0.8


def test_structured_pruning_physically_shrinks_a_1d_cnn(signals):
    X, y = signals
    clf = NNClassifier(
        CNN(input_shape=(2, 32), channels=(8, 16), kernel_size=3, hidden=16, batch_norm=True),
        lr=0.01, max_epochs=6, batch_size=32, random_state=0,
        pruning=Pruning("ln_structured", amount=0.5),
    ).fit(X, y)

    convs = _layers(clf.module_, nn.Conv1d)
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 4), (4, 8)]
    assert [bn.num_features for bn in _layers(clf.module_, nn.BatchNorm1d)] == [4, 8]
    # length 32 -> pool -> 16 -> pool -> 8, times the 8 channels that are left
    assert _layers(clf.module_, nn.Linear)[0].in_features == 8 * 8
    assert clf.predict(X).shape == y.shape


def test_removing_pruned_channels_of_a_1d_cnn_keeps_the_function():
    torch.manual_seed(0)
    # A sigmoid leaves pruned channels at 0.5: exact to remove only without padding.
    module = CNN(input_shape=(1, 20), channels=(4, 6), hidden=8, activation="logistic",
                 padding="valid").build(20, 3)
    layers, graph = analyse(module)
    targets = [n for n in layers if not graph.is_output(n)]
    named = dict(module.named_modules())
    with torch.no_grad():
        for name in targets:
            named[name].weight[::2] = 0
            named[name].bias[::2] = 0
    module.eval()
    x = torch.randn(5, 20)

    smaller, removed, problems = shrink(module, graph, targets)

    assert not problems and removed == set(targets)
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in module.parameters())
    torch.testing.assert_close(smaller(x), module(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "params, conv_kind, out_size",
    [
        (dict(input_shape=(1, 40), kernel_size=4, stride=2, padding=1), nn.Conv1d, (20,)),
        (dict(input_shape=(1, 40), kernel_size=5, padding="valid"), nn.Conv1d, (36,)),
        (dict(input_shape=(3, 8, 12), kernel_size=(3, 5), stride=(1, 2)), nn.Conv2d, (8, 6)),
        (dict(input_shape=(1, 4, 6, 6), kernel_size=3), nn.Conv3d, (4, 6, 6)),
    ],
    ids=["1d-stride-padding", "1d-valid", "2d-tuple-kernel", "3d"],
)
def test_conv_kind_and_output_size_follow_the_input_shape(params, conv_kind, out_size):
    n_features = int(np.prod(params["input_shape"]))
    net = CNN(channels=(4,), hidden=8, **params).build(n_features, 2)
    conv = _layers(net, conv_kind)[0]
    x = torch.randn(3, n_features)
    assert tuple(net[:2](x).shape[2:]) == out_size
    assert conv.kernel_size == (
        params["kernel_size"] if isinstance(params["kernel_size"], tuple) else (params["kernel_size"],) * len(out_size)
    )
    assert net(x).shape == (3, 2)


def test_cnn_parameter_errors():
    with pytest.raises(InvalidParameterError, match="'input_shape' parameter of CNN"):
        CNN(input_shape=(40,)).build(40, 2)
    with pytest.raises(InvalidParameterError, match="'kernel_size' parameter of CNN must be an int or a tuple of 2"):
        CNN(input_shape=(1, 8, 8), kernel_size=(3, 3, 3)).build(64, 2)
    with pytest.raises(InvalidParameterError, match="'padding' parameter of CNN"):
        CNN(input_shape=(1, 8), padding="full").build(8, 2)
    with pytest.raises(InvalidParameterError, match="'stride' parameter of CNN must be an int >= 1"):
        CNN(input_shape=(1, 8), stride=0).build(8, 2)
    with pytest.raises(ValueError, match="larger than the input of convolution 1"):
        CNN(input_shape=(1, 4), kernel_size=7, padding="valid").build(4, 2)
