"""Import optional dependencies lazily, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(name: str, extra: str) -> ModuleType:
    """Import ``name``, or say which extra of mmsk installs it.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"matplotlib.pyplot"``.
    extra : str
        The mmsk extra that provides it, e.g. ``"plot"``.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    ImportError
        If the module is not installed; the message gives the pip command.

    Examples
    --------
    >>> from mmsk._optional import import_optional
    >>> import_optional("json", "none").__name__
    'json'
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{name.split('.')[0]} is needed for this: pip install 'mmsk[{extra}]'"
        ) from exc
