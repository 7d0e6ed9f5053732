"""Parameter handling for specs whose constructor takes ``**kwargs``."""

__all__ = ["OpenParams"]


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
