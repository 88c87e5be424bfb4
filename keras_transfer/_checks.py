"""Argument checks shared by every module, so one mistake reads the same everywhere.

Each check raises `ValueError` naming the argument and what it received, in
Keras' wording ("`units` must be a positive integer. Received: units=-3"), and
returns the value normalised (an `image_size` int becomes a square pair).
"""

import numbers
import warnings


def positive_int(name, value, *, optional=False):
    """`value` as an int; rejects bools, floats, zero and negatives (None when `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def non_negative_int(name, value, *, optional=False):
    """`value` as an int >= 0 (None when `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
    return int(value)


def positive_float(name, value, *, optional=False):
    """`value` as a float > 0 (None when `optional`)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def choice(name, value, choices):
    """`value` if it is one of `choices`; the error lists them."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {listed}. Received: {name}={value!r}")
    return value


def image_size(value, name="image_size"):
    """A `(height, width)` pair from an int (square) or a pair of positive ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"`{name}` must be a positive integer (a square side) or a (height, width) pair "
                         f"of positive integers. Received: {name}={value!r}")
    return (int(value[0]), int(value[1]))


def verbose(value, name="verbose"):
    """Keras' convention everywhere: 0 (silent), 1 (progress), 2 (one line per epoch) or "auto".

    `True` and `False` are accepted as 1 and 0. Returns 0, 1 or 2, with "auto" as 1.
    """
    if isinstance(value, bool):
        return int(value)
    if value == "auto":
        return 1
    if not isinstance(value, numbers.Integral) or value not in (0, 1, 2):
        raise ValueError(f"`{name}` must be 0, 1, 2 or 'auto'. Received: {name}={value!r}")
    return int(value)


def renamed(kwargs, old, new, where):
    """Pops a deprecated keyword `old` from `kwargs`, warning that it is now `new`.

    Returns the value passed under the old name, or `None` when it was not used.
    Old spellings keep working for one release.
    """
    if old not in kwargs:
        return None
    warnings.warn(f"`{where}({old}=...)` is now `{new}=`; the old name will be removed in the next release.",
                  FutureWarning, stacklevel=3)
    return kwargs.pop(old)


def no_unknown(kwargs, where):
    """Rejects keyword arguments left after the deprecated aliases were taken out."""
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise TypeError(f"{where}() got unexpected keyword arguments: {names}")
