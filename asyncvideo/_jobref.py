"""Job references: one opaque, URL-safe string that is enough to re-attach to a task.

A web app hands ``job.ref`` to its caller and later calls ``client.get(ref)``;
it never stores the model or provider beside the task id. The form is
``av1.`` followed by unpadded base64url of a compact JSON array
``[provider, model, task_id, wire]``. It is not a secret and not signed: it
names a task, and the gateway's key decides who may read it.
"""

from __future__ import annotations

import base64
import binascii
import json

import attrs

from .errors import ValidationError

__all__ = ["MAX_REF_LENGTH", "JobRef", "looks_like_ref", "make_ref", "read_ref"]

_PREFIX = "av1."
#: Longer strings are refused before decoding: a ref comes from outside (a URL, a form).
MAX_REF_LENGTH = 4096


@attrs.frozen
class JobRef:
    """What a reference carries."""

    provider: str
    model: str
    task_id: str
    wire: str


def make_ref(provider: str, model: str, task_id: str, wire: str) -> str:
    """The reference of a task (see the module docstring for its form)."""
    # ASCII escapes: a lone surrogate (JSON from a gateway may carry one) still encodes.
    text = json.dumps([provider, model, task_id, wire], separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")
    return _PREFIX + encoded.rstrip("=")


def looks_like_ref(value: str) -> bool:
    """True when ``value`` has a reference's prefix (task ids never start with it)."""
    return value.startswith(_PREFIX)


def read_ref(ref: str) -> JobRef:
    """Decode a reference made by :func:`make_ref`.

    Raises:
        ValidationError: ``ref`` is not a reference this SDK made (the message
            quotes none of it: refs arrive from users' requests).
    """
    if not isinstance(ref, str) or not looks_like_ref(ref) or len(ref) > MAX_REF_LENGTH:
        raise ValidationError("not a job reference (expected job.ref's 'av1.' form)", field="ref")
    body = ref[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        parts = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise ValidationError("job reference is damaged (not base64url JSON)", field="ref") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != 4
        or not all(isinstance(part, str) and part for part in parts)
    ):
        raise ValidationError("job reference is damaged (wrong fields)", field="ref")
    provider, model, task_id, wire = parts
    return JobRef(provider=provider, model=model, task_id=task_id, wire=wire)
