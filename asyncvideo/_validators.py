"""attrs validators for the configuration classes (``Limits``, ``PollPolicy``, ``RetryPolicy``).

They raise :class:`~asyncvideo.errors.ConfigurationError` naming the class, the
field and the value. ``bool`` is refused where a number is meant: ``True`` is an
``int`` to Python but never a sensible pool size. NaN and infinities are refused
too: every time and rate here feeds arithmetic whose result must stay finite
(and a config must survive a round trip through strict JSON).
"""

from __future__ import annotations

import math
from typing import Any, NoReturn, TypeGuard

import attrs

from .errors import ConfigurationError

__all__ = [
    "fraction",
    "non_negative_number",
    "optional",
    "poll_steps",
    "positive_int",
    "positive_number",
]

Validator = Any  # attrs' validator protocol: (instance, attribute, value) -> None


def _fail(
    instance: object, attribute: attrs.Attribute[Any], value: object, wanted: str
) -> NoReturn:
    name = f"{type(instance).__name__}.{attribute.name}"
    raise ConfigurationError(f"{name} must be {wanted}, got {value!r}", field=attribute.name)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An ``int`` >= 1 (not a bool, not a float such as ``2.0``)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(instance, attribute, value, "a positive integer")


def positive_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A finite ``int`` or ``float`` > 0."""
    if not _is_number(value) or not value > 0:
        _fail(instance, attribute, value, "a finite number > 0")


def non_negative_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A finite ``int`` or ``float`` >= 0."""
    if not _is_number(value) or not value >= 0:
        _fail(instance, attribute, value, "a finite number >= 0")


def fraction(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A finite number in ``[0, 1)``: a jitter of 1 could make a delay zero."""
    if not _is_number(value) or not 0 <= value < 1:
        _fail(instance, attribute, value, "a number >= 0 and < 1")


def optional(validator: Validator) -> Validator:
    """``validator``, or ``None``."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def poll_steps(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A tuple of ``(until_elapsed, interval)`` pairs, both > 0, ``until`` increasing."""
    wanted = "a tuple of (until, interval) pairs of finite numbers > 0, in increasing order"
    if not isinstance(value, tuple):
        _fail(instance, attribute, value, wanted)
    previous = 0.0
    for step in value:
        if not (isinstance(step, tuple) and len(step) == 2 and all(map(_is_number, step))):
            _fail(instance, attribute, value, wanted)
        until, interval = step
        if not (until > previous and interval > 0):
            _fail(instance, attribute, value, wanted)
        previous = until
