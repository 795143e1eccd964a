"""Present private-module classes as ``asyncvideo.X`` without breaking their annotations."""

from __future__ import annotations

import inspect
import typing

import attrs

__all__ = ["publish"]


def publish(*classes: type) -> None:
    """Resolve each class's annotations, then set its ``__module__`` to ``"asyncvideo"``.

    With ``from __future__ import annotations`` every annotation is a string that
    ``typing.get_type_hints`` (and cattrs, through it) evaluates in the namespace of
    ``sys.modules[cls.__module__]``. Once ``__module__`` says ``asyncvideo``, names
    that only the defining module imports (``datetime``, ``Path``) are no longer
    found. So the strings are evaluated first, where they were written, and the
    class keeps the resulting objects: in ``__annotations__`` for ``get_type_hints``
    and in the attrs fields' ``type`` for cattrs.

    Args:
        classes: classes defined in the calling module.

    Example:
        >>> from asyncvideo import Job
        >>> Job.__module__, typing.get_type_hints(Job)["created_at"]
        ('asyncvideo', datetime.datetime | None)
    """
    for cls in classes:
        own = inspect.get_annotations(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
        if attrs.has(cls):
            attrs.resolve_types(cls)
        if own:
            cls.__annotations__ = {name: hints[name] for name in own}
        cls.__module__ = "asyncvideo"
