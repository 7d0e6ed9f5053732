"""Parameter handling shared by specs and estimators.

``OpenParams``: parameters of a spec whose constructor takes ``**kwargs``.
``LeanParams``: a pickle that leaves out the parameters at their defaults.
"""

import functools
import inspect

__all__ = ["LeanParams", "OpenParams"]


@functools.cache
def _plain_defaults(cls):
    """``{name: default}`` of the parameters of ``cls.__init__`` whose default is a plain value."""
    return {
        name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is None or type(p.default) in (str, int, float, bool)
    }


def _is_default(value, default):
    """Whether ``value`` is the plain ``default`` (``1 == True`` is not)."""
    return value is default or (type(value) is type(default) and value == default)


class LeanParams:
    """Pickles without the constructor parameters left at their plain defaults.

    A small model's pickle is mostly names: every parameter of the estimator
    and of each spec in it, at about 20 bytes each. Those at their default
    (``None``, a string, a number, a boolean) are left out and put back from
    the constructor's signature when the object is unpickled; like every
    pickle, it is read by the version of the class that wrote it. Put it
    before ``BaseEstimator`` in the bases.
    """

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name, default in _plain_defaults(type(self)).items():
            if name in state and _is_default(state[name], default):
                del state[name]
        return state

    def __setstate__(self, state):
        state = dict(state)
        for name, default in _plain_defaults(type(self)).items():
            state.setdefault(name, default)
        super().__setstate__(state)


class OpenParams:
    """``get_params``/``set_params`` for a spec with open-ended options.

    sklearn's ``BaseEstimator`` reads parameters from the constructor
    signature and ignores ``**kwargs``, so specs such as ``LRSchedule`` and
    ``TorchModule`` expose them by hand: the named constructor parameters
    (``_named``) plus every key of the dict stored in ``_open``. ``clone``,
    ``set_params(lr_schedule__gamma=...)`` and the searches then work on
    them as on any estimator.
    """

    _named = ()
    _open = "options"

    def get_params(self, deep=True):
        return {**{key: getattr(self, key) for key in self._named}, **getattr(self, self._open)}

    def set_params(self, **params):
        extra = getattr(self, self._open)
        for key, value in params.items():
            if key in self._named:
                setattr(self, key, value)
            else:
                extra[key] = value
        return self

    def __eq__(self, other):
        return type(other) is type(self) and self.get_params() == other.get_params()

    __hash__ = None
