"""SearchSpace and its dimensions, rendered for each search engine."""

import numpy as np
import pytest
import skopt.space

from skopt_nn import Categorical, Integer, LRSchedule, Real, SearchSpace
from skopt_nn.search.spaces import KeyedCategorical, as_dimension


def test_log_real_grid_is_geometric_and_hits_the_bounds():
    assert Real(1e-4, 1e-1, log=True).grid(4) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert Real(0.0, 1.0).grid(3) == [0.0, 0.5, 1.0]


def test_integer_grid_is_distinct_ints_within_bounds():
    grid = Integer(16, 256, log=True).grid(5)
    assert grid == [16, 32, 64, 128, 256]
    assert all(type(v) is int for v in grid)
    # A range holding fewer integers than asked gives each integer once.
    assert Integer(1, 3).grid(10) == [1, 2, 3]


def test_single_point_grid_is_the_middle_of_the_range():
    assert Real(1e-4, 1e-2, log=True).grid(1) == pytest.approx([1e-3])
    assert Integer(0, 10).grid(1) == [5]


def test_categorical_keeps_non_scalar_choices_in_every_rendering():
    schedule = LRSchedule("step", gamma=0.5)
    choices = [(64,), (128, 64), None, schedule]
    dim = Categorical(choices)
    assert dim.grid(2) == choices
    assert dim.distribution() == choices
    skopt_dim = dim.skopt("module__hidden_layer_sizes")
    assert isinstance(skopt_dim, KeyedCategorical)
    assert [skopt_dim.decode(key) for key in skopt_dim.categories] == choices


def test_scalar_choices_stay_a_plain_skopt_categorical():
    dim = Categorical(["adam", "sgd"]).skopt("optimizer")
    assert type(dim) is skopt.space.Categorical
    assert dim.categories == ("adam", "sgd")


def test_keyed_categorical_keys_are_unique_when_reprs_collide():
    class Same:
        def __repr__(self):
            return "Same()"

    a, b = Same(), Same()
    dim = KeyedCategorical([a, b])
    assert len(set(dim.categories)) == 2
    assert dim.decode(dim.categories[1]) is b
    with pytest.raises(ValueError, match="key must be one of"):
        dim.decode("nope")


def test_distributions_sample_inside_the_bounds():
    rng = np.random.RandomState(0)
    space = SearchSpace(
        lr=Real(1e-4, 1e-1, log=True),
        dropout=Real(0.0, 0.5),
        width=Integer(16, 256, log=True),
        n_layers=Integer(1, 3),
    )
    dists = space.distributions()
    lrs = dists["lr"].rvs(size=200, random_state=rng)
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # Log-uniform: about a third of the draws in each decade.
    assert 0.2 < np.mean(lrs < 1e-3) < 0.5
    assert 0.0 <= dists["dropout"].rvs(random_state=rng) <= 0.5
    widths = dists["width"].rvs(size=300, random_state=rng)
    assert widths.min() >= 16 and widths.max() <= 256
    assert np.median(widths) < 100  # favours small widths
    one = dists["n_layers"].rvs(random_state=rng)
    assert type(one) is int and 1 <= one <= 3


def test_skopt_rendering_carries_the_log_prior():
    dims = SearchSpace(lr=Real(1e-4, 1e-1, log=True), width=Integer(8, 64)).skopt()
    assert dims["lr"].prior == "log-uniform"
    assert dims["width"].prior == "uniform"
    assert (dims["width"].low, dims["width"].high) == (8, 64)
    assert dims["lr"].name == "lr"


def test_prefixed_aims_every_name_at_a_pipeline_step():
    space = SearchSpace({"lr": Real(1e-3, 1e-1), "module__width": Integer(8, 64)})
    prefixed = space.prefixed("clf__")
    assert list(prefixed) == ["clf__lr", "clf__module__width"]
    assert prefixed["clf__lr"] == space["lr"]
    assert list(space) == ["lr", "module__width"]  # the original is unchanged


def test_lists_and_skopt_dimensions_are_accepted_as_dimensions():
    space = SearchSpace(
        {
            "optimizer": ["sgd", "adam"],
            "lr": skopt.space.Real(1e-4, 1e-1, prior="log-uniform"),
            "batch_size": skopt.space.Integer(16, 64),
            "module__hidden_layer_sizes": skopt.space.Categorical([(8,), (16,)]),
        }
    )
    assert space["optimizer"] == Categorical(["sgd", "adam"])
    assert space["lr"] == Real(1e-4, 1e-1, log=True)
    assert space["batch_size"] == Integer(16, 64)
    assert space["module__hidden_layer_sizes"] == Categorical([(8,), (16,)])


def test_union_lets_later_dimensions_win():
    base = SearchSpace(lr=Real(1e-4, 1e-1, log=True), batch_size=Integer(16, 64))
    merged = base | {"lr": Real(1e-3, 1e-2, log=True)}
    assert merged["lr"] == Real(1e-3, 1e-2, log=True)
    assert merged["batch_size"] == Integer(16, 64)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Real(1.0, 0.5), "Real needs low < high; got low=1.0, high=0.5"),
        (lambda: Real(0.0, 1.0, log=True), "log=True needs low > 0; got low=0.0"),
        (lambda: Integer(5, 5), "Integer needs low < high; got low=5, high=5"),
        (lambda: Integer(0, 8, log=True), "log=True needs low >= 1; got low=0"),
        (lambda: Categorical([]), "at least one choice"),
        (lambda: Real(1e-3, 1e-1).grid(0), "n must be a positive integer; got 0"),
    ],
)
def test_bad_dimensions_raise_value_errors_naming_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Integer(1.5, 4), "low must be an integer; got 1.5"),
        (lambda: Real("a", 1.0), "low must be a finite real number; got 'a'"),
        (lambda: Categorical("abc"), "choices must be a list of values; got 'abc'"),
        (lambda: SearchSpace({"lr": (1e-3, 1e-1)}), "dimension for 'lr' must be a Real"),
        (lambda: SearchSpace({"": [1, 2]}), "non-empty strings"),
        (lambda: SearchSpace([("lr", [1])]), "must be a mapping"),
    ],
)
def test_wrong_types_raise_type_errors_naming_the_value(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_optuna_rendering_matches_the_dimensions():
    distributions = pytest.importorskip("optuna.distributions")
    space = SearchSpace(
        lr=Real(1e-4, 1e-1, log=True),
        width=Integer(8, 64),
        optimizer=Categorical(["adam", "sgd"]),
    )
    rendered = space.optuna()
    assert rendered["lr"] == distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert rendered["width"] == distributions.IntDistribution(8, 64)
    assert rendered["optimizer"].choices == ("adam", "sgd")


def test_scipy_distributions_and_skopt_priors_read_as_dimensions():
    from scipy.stats import loguniform, norm, randint, uniform

    from skopt_nn import NNClassifier, make_search

    assert as_dimension(loguniform(1e-4, 1e-1), "lr") == Real(1e-4, 1e-1, log=True)
    assert as_dimension(uniform(0.1, 0.4), "alpha") == Real(0.1, 0.5)
    assert as_dimension(randint(16, 129), "batch_size") == Integer(16, 128)
    assert Real(1e-4, 1e-1, prior="log-uniform") == Real(1e-4, 1e-1, log=True)
    assert Integer(8, 64, prior="uniform") == Integer(8, 64)
    space = {"lr": loguniform(1e-4, 1e-1), "batch_size": randint(16, 129)}
    for method in ("random", "grid", "bayes", "optuna", "asha"):
        make_search(NNClassifier(), space, method=method)  # every engine takes them
    draws = [make_search(NNClassifier(), space, method="random").param_distributions["lr"].rvs(random_state=i)
             for i in range(50)]
    assert 1e-4 <= min(draws) and max(draws) <= 1e-1
    with pytest.raises(TypeError, match="scipy.stats distribution 'norm' for 'lr' has no bounded range"):
        make_search(NNClassifier(), {"lr": norm(0, 1)}, method="random")
    with pytest.raises(ValueError, match="The 'prior' parameter of Real must be a str among"):
        Real(1, 2, prior="log")
