"""The package version, in a module of its own.

Modules that need the version (the command's ``--version``, the metadata
written with a saved model) read it here rather than from the package, whose
``__init__`` exports them: that keeps the imports one-way.
"""

__version__ = "0.1.0"
