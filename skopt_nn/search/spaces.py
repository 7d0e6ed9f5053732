"""One search space, rendered for every search engine.

A :class:`SearchSpace` maps parameter names to dimensions (:class:`Real`,
:class:`Integer`, :class:`Categorical`). The same definition becomes a grid for
:class:`~sklearn.model_selection.GridSearchCV`, distributions for
:class:`~sklearn.model_selection.RandomizedSearchCV` and the halving searches,
scikit-optimize dimensions for :class:`~skopt.BayesSearchCV`, or Optuna
distributions.
"""

import numbers
from collections.abc import Mapping

import numpy as np
import scipy.stats
import skopt.space

__all__ = ["SearchSpace", "Real", "Integer", "Categorical"]


def _check_number(value, name, kind):
    is_kind = isinstance(value, numbers.Integral if kind == "int" else numbers.Real)
    if isinstance(value, bool) or not is_kind or not np.isfinite(value):
        expected = "an integer" if kind == "int" else "a finite real number"
        raise TypeError(f"{name} must be {expected}; got {value!r}.")


_PRIORS = {"uniform": False, "log-uniform": True}


def _prior_as_log(prior, log, owner):
    """``log`` from scikit-optimize's ``prior=`` when given (both must agree)."""
    if prior is None:
        return log
    if prior not in _PRIORS:
        raise ValueError(
            f"The 'prior' parameter of {owner} must be a str among {set(_PRIORS)} or None. "
            f"Got {prior!r} instead."
        )
    if log and not _PRIORS[prior]:
        raise ValueError(f"{owner} got log=True and prior={prior!r}; pass one of them.")
    return _PRIORS[prior]


class _Dimension:
    """Shared equality and repr; subclasses list their fields in ``_fields``."""

    _fields = ()

    def _values(self):
        return tuple(getattr(self, field) for field in self._fields)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"


class Real(_Dimension):
    """A continuous parameter between ``low`` and ``high``.

    Parameters
    ----------
    low, high : float
        Bounds, ``low < high``.
    log : bool, default=False
        Sample and space grid points uniformly in ``log(value)`` rather than in
        ``value``: the usual choice for learning rates and weight decay.
        Needs ``low > 0``.
    prior : {"uniform", "log-uniform"}, default=None
        scikit-optimize's spelling of ``log``: ``"log-uniform"`` is
        ``log=True``, so a space written for ``skopt`` reads as it is.

    See Also
    --------
    Integer, Categorical, SearchSpace

    Examples
    --------
    >>> from skopt_nn import Real
    >>> Real(1e-4, 1e-1, log=True).grid(4)
    [0.0001, 0.001, 0.01, 0.1]
    """

    _fields = ("low", "high", "log")

    def __init__(self, low, high, log=False, *, prior=None):
        log = _prior_as_log(prior, log, type(self).__name__)
        _check_number(low, "low", "real")
        _check_number(high, "high", "real")
        if not low < high:
            raise ValueError(f"Real needs low < high; got low={low!r}, high={high!r}.")
        if log and low <= 0:
            raise ValueError(f"Real with log=True needs low > 0; got low={low!r}.")
        self.low = float(low)
        self.high = float(high)
        self.log = bool(log)

    def _repr_args(self):
        return f"{self.low!r}, {self.high!r}" + (", log=True" if self.log else "")

    def grid(self, n):
        """Return ``n`` evenly spaced values (geometrically when ``log``)."""
        n = _check_grid_size(n)
        if n == 1:
            middle = np.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
            return [float(middle)]
        points = (np.geomspace if self.log else np.linspace)(self.low, self.high, n)
        # geomspace lands a few ulps off round numbers such as 1e-3.
        return [float(f"{point:.12g}") for point in points]

    def distribution(self):
        """Return a frozen ``scipy.stats`` distribution over the range."""
        if self.log:
            return scipy.stats.loguniform(self.low, self.high)
        return scipy.stats.uniform(self.low, self.high - self.low)

    def skopt(self, name=None):
        """Return the equivalent :class:`skopt.space.Real`."""
        prior = "log-uniform" if self.log else "uniform"
        return skopt.space.Real(self.low, self.high, prior=prior, name=name)

    def ray(self):
        """Return the equivalent Ray Tune distribution (needs the optional ``ray``)."""
        tune = _ray_tune()
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def optuna(self):
        """Return the equivalent ``optuna.distributions.FloatDistribution``."""
        return _optuna_distributions().FloatDistribution(self.low, self.high, log=self.log)


class Integer(_Dimension):
    """An integer parameter between ``low`` and ``high``, both included.

    Parameters
    ----------
    low, high : int
        Bounds, ``low < high``.
    log : bool, default=False
        Favour small values: sample uniformly in ``log(value)`` and space grid
        points geometrically. Suits widths and batch sizes. Needs ``low >= 1``.
    prior : {"uniform", "log-uniform"}, default=None
        scikit-optimize's spelling of ``log``.

    See Also
    --------
    Real, Categorical, SearchSpace

    Examples
    --------
    >>> from skopt_nn import Integer
    >>> Integer(16, 256, log=True).grid(5)
    [16, 32, 64, 128, 256]
    >>> Integer(1, 3).grid(5)
    [1, 2, 3]
    """

    _fields = ("low", "high", "log")

    def __init__(self, low, high, log=False, *, prior=None):
        log = _prior_as_log(prior, log, type(self).__name__)
        _check_number(low, "low", "int")
        _check_number(high, "high", "int")
        if not low < high:
            raise ValueError(f"Integer needs low < high; got low={low!r}, high={high!r}.")
        if log and low < 1:
            raise ValueError(f"Integer with log=True needs low >= 1; got low={low!r}.")
        self.low = int(low)
        self.high = int(high)
        self.log = bool(log)

    def _repr_args(self):
        return f"{self.low!r}, {self.high!r}" + (", log=True" if self.log else "")

    def grid(self, n):
        """Return up to ``n`` distinct integers spread over the range.

        Fewer than ``n`` come back when the range holds fewer integers or
        rounding merges neighbours.
        """
        n = _check_grid_size(n)
        if n == 1:
            middle = np.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
            return [int(round(middle))]
        points = (np.geomspace if self.log else np.linspace)(self.low, self.high, n)
        return sorted({int(round(point)) for point in points})

    def distribution(self):
        """Return a distribution with an ``rvs`` method that yields Python ints."""
        return _IntDistribution(self.low, self.high, self.log)

    def skopt(self, name=None):
        """Return the equivalent :class:`skopt.space.Integer`."""
        prior = "log-uniform" if self.log else "uniform"
        return skopt.space.Integer(self.low, self.high, prior=prior, name=name)

    def ray(self):
        """Return the equivalent Ray Tune distribution (needs the optional ``ray``)."""
        tune = _ray_tune()
        # Ray's integer bounds exclude the upper one.
        return (tune.lograndint if self.log else tune.randint)(self.low, self.high + 1)

    def optuna(self):
        """Return the equivalent ``optuna.distributions.IntDistribution``."""
        return _optuna_distributions().IntDistribution(self.low, self.high, log=self.log)


class Categorical(_Dimension):
    """A parameter taking one of a fixed list of values.

    Choices may be anything an estimator accepts: strings, numbers, ``None``,
    tuples such as ``hidden_layer_sizes``, or spec objects. Every engine,
    scikit-optimize's included, hands the estimator the real value.

    Parameters
    ----------
    choices : sequence
        The values, in order; must not be empty.

    See Also
    --------
    Real, Integer, SearchSpace

    Examples
    --------
    >>> from skopt_nn import Categorical
    >>> Categorical([(64,), (128, 64), None]).grid(2)
    [(64,), (128, 64), None]
    """

    _fields = ("choices",)

    def __init__(self, choices):
        if isinstance(choices, (str, bytes, Mapping)) or not _is_iterable(choices):
            raise TypeError(
                f"Categorical choices must be a list of values; got {choices!r}."
            )
        choices = tuple(choices)
        if not choices:
            raise ValueError("Categorical needs at least one choice; got none.")
        self.choices = choices

    def _repr_args(self):
        return repr(list(self.choices))

    def grid(self, n=None):
        """Return every choice; ``n`` is ignored."""
        return list(self.choices)

    def distribution(self):
        """Return the list of choices, which samplers draw from uniformly."""
        return list(self.choices)

    def skopt(self, name=None):
        """Return a :class:`skopt.space.Categorical` for the choices.

        When a choice is not a plain string, number or bool, the dimension
        holds string keys instead (scikit-optimize cannot hold a tuple as a
        category); :class:`skopt_nn.search.RobustBayesSearchCV` turns the keys
        back into the choices before they reach the estimator.
        """
        if all(_is_plain(choice) for choice in self.choices):
            return skopt.space.Categorical(list(self.choices), name=name)
        return KeyedCategorical(self.choices, name=name)

    def ray(self):
        """Return ``tune.choice`` over the choices, objects included (needs ``ray``)."""
        return _ray_tune().choice(list(self.choices))

    def optuna(self):
        """Return the equivalent ``optuna.distributions.CategoricalDistribution``."""
        return _optuna_distributions().CategoricalDistribution(self.choices)


class KeyedCategorical(skopt.space.Categorical):
    """A scikit-optimize categorical over string keys standing for any values.

    scikit-optimize stores categories in numpy arrays and converts sampled
    points with ``ndarray.item()``, which breaks on tuples ("can only convert
    an array of size 1 to a Python scalar"). This dimension gives the
    optimizer one string key per choice and remembers the real values, so a
    search that knows about it (:class:`skopt_nn.search.RobustBayesSearchCV`)
    can decode every point before fitting.

    Parameters
    ----------
    choices : sequence
        The real values.
    prior, transform, name
        As for :class:`skopt.space.Categorical`.

    Attributes
    ----------
    choices : tuple
        The real values, in the order of ``categories`` (their keys).

    Examples
    --------
    >>> from skopt_nn.search.spaces import KeyedCategorical
    >>> dim = KeyedCategorical([(64,), (128, 64), None])
    >>> dim.categories
    ('(64,)', '(128, 64)', 'None')
    >>> dim.decode("(128, 64)")
    (128, 64)
    """

    def __init__(self, choices, prior=None, transform=None, name=None):
        self.choices = tuple(choices)
        super().__init__(
            _choice_keys(self.choices), prior=prior, transform=transform, name=name
        )

    def decode(self, key):
        """Return the real value behind ``key``."""
        try:
            return self.choices[self.categories.index(key)]
        except ValueError:
            raise ValueError(
                f"key must be one of {list(self.categories)}; got {key!r}."
            ) from None


class _IntDistribution:
    """Integer sampling with the ``rvs`` protocol sklearn's samplers use.

    scipy's ``randint`` yields numpy integers and has no log-uniform form;
    estimators and their repr are happier with Python ints.
    """

    def __init__(self, low, high, log):
        self.low, self.high, self.log = low, high, log

    def rvs(self, size=None, random_state=None):
        if self.log:
            # floor of a log-uniform draw over [low, high + 1) gives each
            # integer k the mass of [k, k + 1) on a log scale.
            draw = scipy.stats.loguniform(self.low, self.high + 1).rvs(
                size=size, random_state=random_state
            )
            values = np.minimum(np.floor(draw), self.high).astype(int)
        else:
            values = scipy.stats.randint(self.low, self.high + 1).rvs(
                size=size, random_state=random_state
            )
        if size is None:
            return int(values)
        return np.asarray(values, dtype=int)

    def __repr__(self):
        log = ", log=True" if self.log else ""
        return f"IntDistribution({self.low}, {self.high}{log})"


class SearchSpace(Mapping):
    """Parameter names mapped to dimensions, rendered for each search engine.

    Parameters
    ----------
    dimensions : mapping, optional
        ``{name: dimension}``. A dimension is a :class:`Real`,
        :class:`Integer` or :class:`Categorical`; a list is read as the
        choices of a :class:`Categorical`, and scikit-optimize's ``Real``,
        ``Integer`` and ``Categorical`` are converted. Names use sklearn's
        ``__`` syntax (``module__width``, ``pruning__amount``).
    **named_dimensions
        More dimensions by keyword; they win over ``dimensions`` on a clash.

    See Also
    --------
    skopt_nn.make_search : build a configured search from a space.
    skopt_nn.default_space : a sensible space for an estimator.

    Examples
    --------
    >>> from skopt_nn import SearchSpace, Real, Integer, Categorical
    >>> space = SearchSpace({
    ...     "lr": Real(1e-3, 1e-1, log=True),
    ...     "batch_size": Integer(32, 128, log=True),
    ...     "lr_schedule": Categorical(["constant", "cosine"]),
    ...     "module__hidden_layer_sizes": Categorical([(32,), (64, 32)]),
    ... })
    >>> space.grid(3)["lr"]
    [0.001, 0.01, 0.1]
    >>> sorted(space.skopt())
    ['batch_size', 'lr', 'lr_schedule', 'module__hidden_layer_sizes']
    >>> list(space.prefixed("clf__"))[:2]
    ['clf__lr', 'clf__batch_size']
    """

    def __init__(self, dimensions=None, /, **named_dimensions):
        if dimensions is None:
            dimensions = {}
        if not isinstance(dimensions, Mapping):
            raise TypeError(
                f"dimensions must be a mapping of names to dimensions; got {dimensions!r}."
            )
        merged = {**dimensions, **named_dimensions}
        self._dimensions = {}
        for name, dimension in merged.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Parameter names must be non-empty strings; got {name!r}.")
            self._dimensions[name] = as_dimension(dimension, name)

    def __getitem__(self, name):
        return self._dimensions[name]

    def __iter__(self):
        return iter(self._dimensions)

    def __len__(self):
        return len(self._dimensions)

    def __repr__(self):
        return f"SearchSpace({self._dimensions!r})"

    def __or__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return SearchSpace({**self._dimensions, **SearchSpace(other)._dimensions})

    def __ror__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return SearchSpace({**SearchSpace(other)._dimensions, **self._dimensions})

    def grid(self, n=3):
        """Render for :class:`~sklearn.model_selection.GridSearchCV`.

        Parameters
        ----------
        n : int, default=3
            Points per :class:`Real` and :class:`Integer` dimension;
            categorical dimensions contribute all their choices.

        Returns
        -------
        dict of list
        """
        return {name: dim.grid(n) for name, dim in self.items()}

    def distributions(self):
        """Render for ``RandomizedSearchCV`` and the halving searches.

        Returns
        -------
        dict
            ``scipy.stats`` distributions (objects with ``rvs``) for ranges,
            lists for categorical dimensions.
        """
        return {name: dim.distribution() for name, dim in self.items()}

    def skopt(self):
        """Render for :class:`~skopt.BayesSearchCV`.

        Categorical dimensions with non-scalar choices become
        :class:`KeyedCategorical`; run them with
        :class:`skopt_nn.search.RobustBayesSearchCV` (what
        :func:`skopt_nn.make_search` builds), which decodes the keys.

        Returns
        -------
        dict of skopt.space.Dimension
        """
        return {name: dim.skopt(name) for name, dim in self.items()}

    def ray(self):
        """Render as Ray Tune distributions for a ``tune.Tuner``'s ``param_space``.

        Needs the optional ``ray`` (``pip install 'skopt-nn[ray]'``).
        Categorical choices stay the objects given (tuples, ``None``, specs).

        Returns
        -------
        dict of ray.tune.search.sample.Domain
        """
        return {name: dim.ray() for name, dim in self.items()}

    def optuna(self):
        """Render as Optuna distributions (needs the optional ``optuna``).

        Returns
        -------
        dict of optuna.distributions.BaseDistribution
        """
        return {name: dim.optuna() for name, dim in self.items()}

    def prefixed(self, prefix):
        """Return a copy whose names start with ``prefix``.

        Use it to aim a space at one step of a Pipeline
        (``space.prefixed("nnclassifier__")``).
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string; got {prefix!r}.")
        return SearchSpace({prefix + name: dim for name, dim in self.items()})


def as_dimension(value, name="value"):
    """Return ``value`` as a :class:`Real`, :class:`Integer` or :class:`Categorical`.

    Lists become categorical choices; scikit-optimize dimensions are
    converted. Anything else is refused with the name it was given under.

    Examples
    --------
    >>> from skopt_nn.search.spaces import as_dimension
    >>> as_dimension(["sgd", "adam"], "optimizer")
    Categorical(['sgd', 'adam'])
    """
    if isinstance(value, _Dimension):
        return value
    if isinstance(value, list):
        return Categorical(value)
    if isinstance(value, KeyedCategorical):
        return Categorical(value.choices)
    if isinstance(value, skopt.space.Categorical):
        return Categorical(value.categories)
    if isinstance(value, (skopt.space.Real, skopt.space.Integer)):
        cls = Real if isinstance(value, skopt.space.Real) else Integer
        return cls(value.low, value.high, log=value.prior == "log-uniform")
    if isinstance(value, scipy.stats.distributions.rv_frozen):
        return _from_scipy(value, name)
    raise TypeError(
        f"The dimension for {name!r} must be a Real, Integer or Categorical "
        f"(or a list of choices, a skopt dimension, or a scipy.stats uniform, loguniform "
        f"or randint distribution); got {value!r}."
    )


# scipy.stats distributions with a bounded range of equal chances, which
# every engine can search: the name of the distribution -> (kind, log)
_SCIPY = {"uniform": (Real, False), "loguniform": (Real, True), "reciprocal": (Real, True),
          "randint": (Integer, False)}


def _from_scipy(frozen, name):
    """The dimension of a frozen ``scipy.stats`` distribution (uniform, loguniform, randint)."""
    kind = getattr(frozen.dist, "name", type(frozen.dist).__name__)
    if kind not in _SCIPY:
        raise TypeError(
            f"The scipy.stats distribution {kind!r} for {name!r} has no bounded range every "
            f"engine can search; use one of {sorted(_SCIPY)}, a Real, Integer or Categorical, "
            "or pass it to sklearn's RandomizedSearchCV directly."
        )
    cls, log = _SCIPY[kind]
    low, high = (float(v) for v in frozen.support())
    if cls is Integer:
        return Integer(int(low), int(high), log=False)
    return Real(low, high, log=log)


def _is_iterable(value):
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _is_plain(value):
    """Whether scikit-optimize can hold ``value`` as a category unchanged."""
    return isinstance(value, (str, bool, numbers.Number, np.bool_)) and not isinstance(
        value, complex
    )


def _choice_keys(choices):
    """One distinct, readable string per choice (its repr, made unique)."""
    keys = []
    for index, choice in enumerate(choices):
        key = repr(choice)
        if key in keys:
            key = f"{key} #{index}"
        keys.append(key)
    return tuple(keys)


def _check_grid_size(n):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}.")
    return int(n)


def _ray_tune():
    try:
        from ray import tune
    except ImportError as exc:
        raise ImportError(
            "Rendering a SearchSpace for Ray Tune needs the optional ray package: "
            "pip install 'skopt-nn[ray]'"
        ) from exc
    return tune


def _optuna_distributions():
    try:
        import optuna.distributions
    except ImportError as exc:
        raise ImportError(
            "Rendering a SearchSpace for Optuna needs the optional optuna "
            "package: pip install optuna"
        ) from exc
    return optuna.distributions
