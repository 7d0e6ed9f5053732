"""A tiny name -> factory registry with errors that list every valid name."""

from sklearn.utils._param_validation import InvalidParameterError

__all__ = ["Registry"]


class Registry:
    """Case-insensitive mapping of option names to factories.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("optimizer").

    Examples
    --------
    >>> reg = Registry("colour")
    >>> reg.register("red", lambda: (255, 0, 0))
    >>> reg.get("RED")()
    (255, 0, 0)
    >>> reg.get("blue")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: Invalid colour: expected one of ['red'], but got 'blue'.
    """

    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def register(self, name, factory):
        self._items[name.lower()] = factory

    @property
    def names(self):
        """Sorted list of the registered names."""
        return sorted(self._items)

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._items

    def canonical(self, name, *, param=None, owner=None):
        """Return the registered spelling of ``name`` or raise ``ValueError``."""
        if name in self:
            return name.lower()
        raise InvalidParameterError(self.error_message(name, param=param, owner=owner))

    def get(self, name, *, param=None, owner=None):
        """Return the factory registered under ``name`` (case-insensitive)."""
        return self._items[self.canonical(name, param=param, owner=owner)]

    def error_message(self, got, *, param=None, owner=None, extra=""):
        if param is None:
            return f"Invalid {self.kind}: expected one of {self.names}, but got {got!r}."
        where = f" of {owner}" if owner else ""
        return (
            f"The {param!r} parameter{where} must be one of {self.names}"
            f"{extra}; got {got!r} instead."
        )
