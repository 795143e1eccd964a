"""``ASYNCVIDEO_LOG``: the library's logging, switched on from the environment.

``ASYNCVIDEO_LOG=debug`` (or ``info``, ``warning``, ``error``; any case) shows
what the ``asyncvideo`` logger says on stderr, without a line of logging setup.
It is read each time a :class:`~asyncvideo.Client` is created (not at import:
by then an application has usually configured logging, and that must win):

- unset or empty: nothing happens.
- The ``asyncvideo`` logger already has a handler or a level of the user's: the
  variable does nothing (configuration in code wins).
- Logging is configured higher up (a handler on the root logger, e.g.
  ``logging.basicConfig()``): only the ``asyncvideo`` logger's level is set, so
  its records reach those handlers once, not twice.
- Otherwise: one stderr handler at that level is added to the ``asyncvideo``
  logger. Creating more clients adds no second one (they follow a changed level).
- Any other value: a ``RuntimeWarning`` naming the accepted ones; no crash.

The library's log lines never hold the API key (see ``_logtext`` and the
connection's scrubber), whatever the level.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["ENV_VAR", "configure_from_env"]

ENV_VAR = "ASYNCVIDEO_LOG"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _EnvHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler ``ASYNCVIDEO_LOG`` adds; its class marks it as ours."""


def configure_from_env() -> None:
    """Apply ``ASYNCVIDEO_LOG`` to the ``asyncvideo`` logger (see the module docstring).

    Idempotent: calling it again adds no second handler.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    level = _LEVELS.get(value.lower())
    if level is None:
        warnings.warn(
            f"{ENV_VAR}={value!r} is not a log level; use one of {', '.join(_LEVELS)} (ignored)",
            RuntimeWarning,
            stacklevel=3,  # the caller's Client(...) line
        )
        return
    logger = logging.getLogger("asyncvideo")
    ours = [handler for handler in logger.handlers if isinstance(handler, _EnvHandler)]
    if ours:
        logger.setLevel(level)
        for handler in ours:
            handler.setLevel(level)
        return
    if logger.handlers or logger.level != logging.NOTSET:
        return  # configured in code: that wins
    logger.setLevel(level)
    if logger.hasHandlers():
        return  # a handler higher up (root) will show them; a second would print each twice
    handler = _EnvHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
