"""``to_dict()`` / ``from_dict()`` for every public data class, through the one converter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

__all__ = ["JSONForm"]


class JSONForm:
    """Mixin: the class converts to and from the ``asyncvideo`` JSON form.

    The form itself (datetimes, states, images, errors) is described in
    ``asyncvideo/_convert.py``; every class uses the same converter.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, object]:
        """This object as a JSON-safe dict (``json.dumps`` takes it as is).

        Example:
            >>> from asyncvideo import VideoRequest
            >>> VideoRequest(prompt="a cat", image=b"\\x89PNG").to_dict()["image"]
            {'base64': 'iVBORw=='}
        """
        # Imported here: the converter imports every class that uses this mixin.
        from ._convert import to_dict

        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        """Rebuild an object from :meth:`to_dict`'s output (or the same JSON, loaded).

        Args:
            data: the dict form.

        Raises:
            ValidationError: ``data`` does not fit the class; the message names the field.

        Example:
            >>> from asyncvideo import VideoRequest
            >>> VideoRequest.from_dict({"prompt": "a cat", "model": "viduq1"}).model
            'viduq1'
        """
        from ._convert import from_dict

        return from_dict(cls, data)
