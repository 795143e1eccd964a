"""The client side of webhooks: which creates carry our callback URL, and what it names.

A create sent by a client with ``webhook_url`` carries that URL, with our own
reference of the job added as the query parameter :data:`CALLBACK_TOKEN_PARAM`
(and, where the provider echoes one, in its pass-through field too). The
reference is the create's idempotency key: it is known before the create (the
task id is not), it is already made once per logical request, and a batch's
journal stores it before the create is sent, so the reference outlives a
restart. :class:`CallbackTasks` remembers which task each reference named, so
a callback is matched to a job by our reference, not by an id the sender chose.
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "CALLBACK_TOKEN_PARAM",
    "CallbackTasks",
    "callback_url_with_token",
    "check_secret",
    "check_webhook_url",
    "token_from_callback_url",
]

#: The query parameter of the callback URL that carries our reference of the job.
CALLBACK_TOKEN_PARAM = "asyncvideo_token"

#: References of callbacks that came before their create's answer, at most (a
#: sender that makes them up fills this, never the references of our tasks).
_MAX_EARLY_TOKENS = 1024

#: References remembered at most (the oldest go first; about 300 bytes each): a
#: web app that submits without waiting must not grow without bound. A task is
#: forgotten anyway once a wait sees it end; a reference forgotten early only
#: means its callback is matched by (provider, task id), and a later wait polls
#: it on the normal schedule.
_MAX_REMEMBERED = 16_384


def check_webhook_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; else ``ConfigurationError``."""
    if not isinstance(url, str):
        raise ConfigurationError("webhook_url must be a string", field="webhook_url")
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "webhook_url must be an absolute http(s) URL such as 'https://app.example/hooks/video'",
            field="webhook_url",
        )
    if parts.fragment:
        raise ConfigurationError(
            "webhook_url must not have a #fragment (it is never sent)", field="webhook_url"
        )
    return url.strip()


def check_secret(secret: str) -> str:
    """``secret`` if it is a non-empty string; the error never shows it."""
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError("webhook_secret must be a non-empty text", field="webhook_secret")
    return secret


def callback_url_with_token(url: str, token: str) -> str:
    """``url`` with ``?asyncvideo_token=<token>`` added (other query parameters kept)."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k != CALLBACK_TOKEN_PARAM
    ]
    query.append((CALLBACK_TOKEN_PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def token_from_callback_url(url: str) -> str | None:
    """Our reference from a callback request's URL (or its query string), if it has one."""
    query = urlsplit(url).query if "?" in url or "://" in url else url
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == CALLBACK_TOKEN_PARAM]
    return values[-1] if values and values[-1] else None


class CallbackTasks:
    """Which tasks were created with the client's callback URL, and under which reference."""

    __slots__ = ("_by_token", "_early", "_early_tokens", "_limit", "_tasks")

    def __init__(self, limit: int = _MAX_REMEMBERED) -> None:
        self._limit = limit
        self._by_token: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._tasks: dict[tuple[str, str], str] = {}
        #: tasks of ours whose callback came while nothing waited for them
        self._early: set[tuple[str, str]] = set()
        #: references whose callback came before the create's answer named their task
        self._early_tokens: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_token)

    def add(self, token: str, provider: str, task_id: str) -> None:
        """Remember that the create with reference ``token`` made ``(provider, task_id)``."""
        task = (provider, task_id)
        old = self._by_token.pop(token, None)
        if old is not None:
            self._tasks.pop(old, None)
        self._by_token[token] = task
        self._tasks[task] = token
        if token in self._early_tokens:  # its callback beat the create's answer
            del self._early_tokens[token]
            self._early.add(task)
        while len(self._by_token) > self._limit:
            _, dropped = self._by_token.popitem(last=False)
            self._tasks.pop(dropped, None)
            self._early.discard(dropped)

    def forget(self, provider: str, task_id: str) -> None:
        """Drop a task that has ended: its late callbacks find no watch either way."""
        token = self._tasks.pop((provider, task_id), None)
        if token is not None:
            self._by_token.pop(token, None)
        self._early.discard((provider, task_id))

    def task_for(self, token: str) -> tuple[str, str] | None:
        """The ``(provider, task id)`` our reference ``token`` named, if remembered."""
        return self._by_token.get(token)

    def expects_callback(self, provider: str, task_id: str) -> bool:
        """Whether this task's create carried the client's callback URL."""
        return (provider, task_id) in self._tasks

    def called_back_early(self, provider: str, task_id: str, token: str | None = None) -> None:
        """Note that this task's callback came before any wait for it began.

        Only tasks remembered here are noted, so the set is bounded like them;
        a ``token`` that names no task yet (the create's answer is still on its
        way) is kept among the last 1,024 such.
        """
        if (provider, task_id) in self._tasks:
            self._early.add((provider, task_id))
        elif token is not None and token not in self._by_token:
            self._early_tokens[token] = None
            self._early_tokens.move_to_end(token)
            if len(self._early_tokens) > _MAX_EARLY_TOKENS:
                self._early_tokens.popitem(last=False)

    def take_early(self, provider: str, task_id: str) -> bool:
        """Whether a callback for this task came before its wait (asked once)."""
        if (provider, task_id) not in self._early:
            return False
        self._early.discard((provider, task_id))
        return True
