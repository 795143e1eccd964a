"""Receiving webhook callbacks: verify them, read them, and wake the job they name.

A gateway (or the provider behind it) POSTs to ``callback_url`` when a task
ends. A callback is a hint, never the truth: the receiver verifies it, reads
which task it names, and asks the client's poller to look at that job once
now (``Client.notify``). The job's state then comes from the gateway's own
status answer, so a forged or mistaken body can cost one status query at most
and can never finish, fail or download a job by itself. Jobs with a callback
keep a long safety poll, so a callback that never arrives only delays them.

Bodies read (:func:`parse_callback`): Vidu's task body (``id``, ``state``,
``err_code``, ``creations[].url``, ``payload``: Vidu calls the URL itself,
even behind a relay, which passes ``callback_url`` and ``payload`` through),
Kling's (``task_id``, ``task_status``, ``task_result.videos[].url``), and the
gateway's own job objects in every shape the SDK reads from status answers
(OpenAI videos, generations, ``generation.task``, relay envelopes).

The signature scheme (ours; a gateway or a proxy of yours signs with
:func:`sign`)::

    X-Asyncvideo-Timestamp: 1767225600            Unix seconds when sent
    X-Asyncvideo-Delivery:  7f0c...                one id per delivery, kept on retries
    X-Asyncvideo-Signature: v1=<hex>[, v1=<hex>]  HMAC-SHA256(secret, "<timestamp>." + body)

Several ``v1=`` values (and several receiver secrets) allow rotating a secret
without downtime. A callback is refused with
:class:`~asyncvideo.errors.WebhookVerificationError` when a header is missing
or unreadable, no signature matches, the timestamp is more than ``tolerance``
(5 minutes) away from now in either direction, or the same delivery (same id,
or same signature) was already accepted within that window. A refused
callback changes nothing.

Example (aiohttp, mounted beside your own routes)::

    from aiohttp import web
    from asyncvideo import Client, webhooks

    client = Client(webhook_url="https://app.example/hooks/video", webhook_secret=SECRET)
    app = web.Application()
    app.add_subapp("/hooks/video", webhooks.aiohttp_app(client))

Example (FastAPI or Starlette, through the framework-neutral receiver)::

    from fastapi import FastAPI, Request, Response
    from asyncvideo import webhooks

    receiver = webhooks.WebhookReceiver(client)  # the secret comes from the client

    @app.post("/hooks/video")
    async def video_hook(request: Request) -> Response:
        result = await receiver.handle(
            await request.body(), request.headers, request.query_params
        )
        return Response(status_code=result.status)

Starlette reads the whole body before ``handle`` sees it; put a body-size
limit in front (a proxy's, or a middleware) as for any public endpoint.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from ._callbacks import CALLBACK_TOKEN_PARAM
from ._clock import Clock, SystemClock
from ._models import DEFAULT_MAX_RESPONSE_BYTES, Job
from .errors import ProtocolError, ValidationError, WebhookVerificationError
from .providers import PROVIDERS, Router
from .providers._parse import as_text, parse_json_object, parse_task

if TYPE_CHECKING:
    from aiohttp import web

    from ._client import Client

__all__ = [
    "DEFAULT_TOLERANCE",
    "DELIVERY_HEADER",
    "MAX_CALLBACK_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookReceiver",
    "WebhookResult",
    "WebhookVerifier",
    "aiohttp_app",
    "parse_callback",
    "sign",
]

SIGNATURE_HEADER = "X-Asyncvideo-Signature"
TIMESTAMP_HEADER = "X-Asyncvideo-Timestamp"
DELIVERY_HEADER = "X-Asyncvideo-Delivery"
#: Seconds a signed timestamp may be away from now, in either direction.
DEFAULT_TOLERANCE = 300.0
#: The largest callback body read: the bound the client puts on status answers.
MAX_CALLBACK_BYTES = DEFAULT_MAX_RESPONSE_BYTES

_VERSION = "v1"
# Bounds on what a sender controls in the headers.
_MAX_SIGNATURES = 8
_MAX_HEADER_CHARS = 2048
_MAX_DELIVERY_ID_CHARS = 200
_MAX_TIMESTAMP_DIGITS = 12
#: Deliveries remembered for replay checks; the oldest go first beyond this.
_MAX_REMEMBERED = 65_536

# A body with no model names its provider by its shape: Vidu's and Kling's own
# callbacks carry no model. The first key present wins.
_PROVIDER_BY_KEY = (("creations", "vidu"), ("task_result", "kling"))
_DEFAULT_ROUTER = Router()
# Where a provider's own callback echoes the create's pass-through field: at the
# top (Vidu ``payload``) or under ``task_info`` (Kling ``external_task_id``).
_REFERENCE_FIELDS = tuple(
    sorted({p.callback_reference for p in PROVIDERS.values() if p.callback_reference})
)
_REFERENCE_CONTAINERS = ("task_info",)

logger = logging.getLogger("asyncvideo")


# -- signing ----------------------------------------------------------------------------


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def _seconds(value: float, field: str) -> float:
    """``value`` as a positive finite number of seconds, or ValidationError."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValidationError(f"{field} must be a positive number of seconds", field=field)
    return float(value)


def _as_list(secret: str | Sequence[str]) -> tuple[str, ...]:
    secrets = (secret,) if isinstance(secret, str) else tuple(secret)
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValidationError("a webhook secret must be a non-empty string", field="secret")
    return secrets


def sign(
    body: bytes,
    secret: str | Sequence[str],
    *,
    timestamp: float,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """The headers that sign ``body`` with our scheme (see the module docstring).

    Args:
        body: the exact bytes that will be sent.
        secret: the shared secret; several sign with each (while rotating).
        timestamp: Unix time of sending (whole seconds are signed).
        delivery_id: the delivery's id, the same on every retry of it.

    Returns:
        ``X-Asyncvideo-Timestamp``, ``X-Asyncvideo-Signature`` and, with an id,
        ``X-Asyncvideo-Delivery``.

    Raises:
        ValidationError: an empty secret, or a timestamp that is not finite
            Unix seconds (negative, NaN, past 12 digits).

    Example:
        >>> sign(b"{}", "s3cret", timestamp=1767225600)[SIGNATURE_HEADER][:3]
        'v1='
    """
    if not (
        isinstance(timestamp, int | float)
        and math.isfinite(timestamp)
        and 0 <= timestamp < 10**_MAX_TIMESTAMP_DIGITS
    ):
        # The verifier reads up to 12 digits and nothing else: such a stamp could never pass.
        raise ValidationError(
            "timestamp must be Unix seconds: a finite number from 0 to 10**12",
            field="timestamp",
        )
    stamp = str(math.floor(timestamp))
    signatures = ", ".join(f"{_VERSION}={_digest(s, stamp, body)}" for s in _as_list(secret))
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signatures}
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    return headers


# -- verifying --------------------------------------------------------------------------


class _Seen:
    """Deliveries accepted recently: each key until its expiry, at most ``limit`` keys."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []

    def __contains__(self, key: str) -> bool:
        return key in self._expiry

    def prune(self, now: float) -> None:
        queue, expiry = self._queue, self._expiry
        while queue and (queue[0][0] < now or len(expiry) > self._limit):
            when, key = heapq.heappop(queue)
            if expiry.get(key) == when:
                del expiry[key]

    def add(self, key: str, until: float) -> None:
        self._expiry[key] = until
        heapq.heappush(self._queue, (until, key))


def _lowered(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {key.lower(): value for key, value in (headers or {}).items()}


def _refuse(reason: str, message: str) -> WebhookVerificationError:
    return WebhookVerificationError(f"webhook callback refused: {message}", reason=reason)


def _delivery_id(headers: Mapping[str, str]) -> str | None:
    value = headers.get(DELIVERY_HEADER.lower())
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_DELIVERY_ID_CHARS or not value.isprintable():
        raise _refuse("malformed", f"unreadable {DELIVERY_HEADER} header")
    return value


def _signatures(header: str) -> list[bytes]:
    """The ``v1=`` values, as bytes: a non-ASCII one (sent as raw header bytes) can only
    fail to match, and ``hmac.compare_digest`` raises on non-ASCII text."""
    if len(header) > _MAX_HEADER_CHARS:
        raise _refuse("malformed", f"{SIGNATURE_HEADER} header too long")
    found = []
    for part in header.replace(",", " ").split():
        version, _, value = part.partition("=")
        if version == _VERSION and value:
            found.append(value.lower().encode("utf-8", "surrogateescape"))
    if not found:
        raise _refuse("malformed", f"no {_VERSION}= value in {SIGNATURE_HEADER}")
    return found[:_MAX_SIGNATURES]


@attrs.frozen
class _Checked:
    timestamp: float
    delivery_id: str | None
    signature: str


class WebhookVerifier:
    """Checks our signature scheme, the timestamp window and replays.

    Args:
        secret: the shared secret, or several (any one matching is enough:
            the old and the new while rotating).
        tolerance: seconds a timestamp may be from now, either way (5 minutes).
        clock: where "now" comes from (``Clock.time()``); tests pass a ManualClock.

    Example:
        >>> verifier = WebhookVerifier("s3cret")
        >>> body = b'{"id": "task_1", "status": "completed"}'
        >>> verifier.verify(body, sign(body, "s3cret", timestamp=SystemClock().time()))
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Clock | None = None,
    ) -> None:
        self.tolerance = _seconds(tolerance, "tolerance")
        self._secrets = _as_list(secret)
        self._clock: Clock = clock or SystemClock()
        self._seen = _Seen(_MAX_REMEMBERED)

    def __repr__(self) -> str:
        return f"WebhookVerifier(secrets={len(self._secrets)}, tolerance={self.tolerance:g})"

    def verify(
        self, body: bytes, headers: Mapping[str, str] | None, *, now: float | None = None
    ) -> None:
        """Accept this delivery or raise; an accepted one is remembered against replays.

        Args:
            body: the raw body, exactly as received.
            headers: the request's headers (any mapping; names in any case).
            now: Unix time to judge the timestamp by (default: the clock's).

        Raises:
            WebhookVerificationError: see the module docstring; nothing is remembered.
            ValidationError: ``now`` is not a finite number.
        """
        checked = self._check(body, headers, now=now)
        self._remember(checked)

    def _check(
        self, body: bytes, headers: Mapping[str, str] | None, *, now: float | None = None
    ) -> _Checked:
        """Like :meth:`verify` without remembering: the receiver remembers once it acts."""
        lowered = _lowered(headers)
        stamp = lowered.get(TIMESTAMP_HEADER.lower())
        header = lowered.get(SIGNATURE_HEADER.lower())
        if stamp is None or header is None:
            raise _refuse("missing", f"no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
        stamp = stamp.strip()
        if not stamp.isdigit() or not stamp.isascii() or len(stamp) > _MAX_TIMESTAMP_DIGITS:
            raise _refuse("malformed", f"unreadable {TIMESTAMP_HEADER} header")
        given = _signatures(header)
        delivery = _delivery_id(lowered)
        matched = None
        for secret in self._secrets:
            expected = _digest(secret, stamp, body)
            for value in given:
                if hmac.compare_digest(expected.encode("ascii"), value):
                    matched = expected
        if matched is None:
            raise _refuse("signature", "no signature matches")
        now = self._clock.time() if now is None else now
        if not (isinstance(now, int | float) and math.isfinite(now)):
            # Every comparison with NaN is false: no timestamp would be too old.
            raise ValidationError("now must be a finite Unix time", field="now")
        self._seen.prune(now)
        timestamp = float(stamp)
        if now - timestamp > self.tolerance:
            raise _refuse("stale", f"timestamp is {now - timestamp:.0f} s old")
        if timestamp - now > self.tolerance:
            raise _refuse("future", f"timestamp is {timestamp - now:.0f} s ahead")
        # The delivery id is not signed, so a copy under a new id is caught by its signature.
        if (delivery is not None and f"d:{delivery}" in self._seen) or f"s:{matched}" in self._seen:
            raise _refuse("replayed", "this delivery was already accepted")
        return _Checked(timestamp, delivery, matched)

    def _remember(self, checked: _Checked) -> None:
        """Refuse this delivery (its id and its signature) from now on, within the window."""
        # Past the window a copy is refused as stale anyway.
        until = checked.timestamp + self.tolerance
        self._seen.add(f"s:{checked.signature}", until)
        if checked.delivery_id is not None:
            self._seen.add(f"d:{checked.delivery_id}", until)


# -- reading ----------------------------------------------------------------------------


def _json_body(body: bytes | str | Mapping[str, object], max_bytes: int) -> Mapping[str, object]:
    if isinstance(body, Mapping):
        return body
    if len(body) > max_bytes:
        raise ProtocolError(f"callback body larger than {max_bytes} bytes")
    payload = parse_json_object(body)
    if payload is None:
        raise ProtocolError("callback body is not a JSON object (or nests too deep)")
    return payload


def _model_and_provider(
    payload: Mapping[str, object], model: str | None, provider: str | None
) -> tuple[str, str]:
    inner = payload.get("data")
    named = as_text(payload.get("model"))
    if named is None and isinstance(inner, dict):
        named = as_text(inner.get("model"))  # a relay's envelope
    model = model or named or ""
    if provider is None and model:
        try:
            provider = _DEFAULT_ROUTER.provider_for(model).name
        except ValidationError:
            provider = None
    if provider is None:
        provider = next((name for key, name in _PROVIDER_BY_KEY if key in payload), "")
    return model, provider


def parse_callback(
    body: bytes | str | Mapping[str, object],
    headers: Mapping[str, str] | None = None,
    *,
    model: str | None = None,
    provider: str | None = None,
    max_bytes: int = MAX_CALLBACK_BYTES,
) -> Job:
    """Read a callback body into a :class:`~asyncvideo.Job` snapshot.

    The same liberal reader as status answers (any status vocabulary, the
    video URL wherever it is, envelopes unwrapped), so every body the module
    docstring lists works. The snapshot says what the *sender* claims; verify
    the callback first (:class:`WebhookVerifier`) and confirm with the gateway
    before acting on it, as :class:`WebhookReceiver` does.

    Args:
        body: the raw body (bytes or text), or JSON already decoded.
        headers: the request's headers; a compressed body is refused.
        model: the job's model, when the body does not name one (Vidu's and
            Kling's callbacks do not). Otherwise the body's ``model``, or ``""``.
        provider: the job's provider; otherwise routed from the model, or told
            by the body's shape (``creations``: Vidu, ``task_result``: Kling), or ``""``.
        max_bytes: the largest body read (the client's bound on status answers).

    Returns:
        The job as the callback describes it; ``job.id`` is the id the body
        names (behind a relay, Vidu names its own task id, not the relay's).

    Raises:
        ProtocolError: not a JSON object, too large, too deep, compressed, or
            naming no task.

    Example:
        >>> job = parse_callback(b'{"id": "vidu_1", "state": "success", "creations": []}')
        >>> (job.id, job.provider, job.state.value)
        ('vidu_1', 'vidu', 'succeeded')
    """
    encoding = _lowered(headers).get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ProtocolError(f"callback body is {encoding}-encoded; send it uncompressed")
    payload = _json_body(body, max_bytes)
    model, provider = _model_and_provider(payload, model, provider)
    return parse_task(payload, model=model, provider=provider)


# -- handling ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WebhookResult:
    """What :meth:`WebhookReceiver.handle` did with one callback.

    Attributes:
        status: the HTTP status to answer: 200 (accepted, or a duplicate: the
            sender may stop retrying), 400 (unreadable body) or 401 (refused
            by verification).
        woken: a job this client is waiting for was asked to poll now.
        duplicate: the delivery was already accepted; nothing was done again.
        job: the callback's snapshot (``None`` when refused or unreadable);
            what the sender claims, not yet confirmed by the gateway.
        reason: why it was refused: a
            :attr:`~asyncvideo.errors.WebhookVerificationError.reason`, or
            ``"body"`` for an unreadable body; ``None`` when accepted.
    """

    status: int
    woken: bool = False
    duplicate: bool = False
    job: Job | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        """A small JSON answer for the sender (no details of why, nothing of the body)."""
        if self.reason is not None and not self.duplicate:
            return {"ok": False, "error": self.reason}
        return {"ok": True, "woken": self.woken, "duplicate": self.duplicate}


def _nothing() -> None:
    pass


def _token_in(payload: Mapping[str, object], query: Mapping[str, str] | None) -> str | None:
    """Our reference of the job: the callback URL's query parameter, else a pass-through field."""
    token = as_text(query.get(CALLBACK_TOKEN_PARAM)) if query is not None else None
    if token:
        return token
    places = [payload]
    places += [
        inner for key in _REFERENCE_CONTAINERS if isinstance(inner := payload.get(key), dict)
    ]
    for place in places:
        for field in _REFERENCE_FIELDS:
            token = as_text(place.get(field))
            if token:
                return token
    return None


class WebhookReceiver:
    """The framework-neutral handler: verify, read, and wake the job a callback names.

    Give it the raw body, the headers and the query parameters of each
    callback request and answer with :attr:`WebhookResult.status`. Refused
    callbacks (401, 400) change nothing; a delivery already accepted answers
    200 and does nothing again, so the sender stops retrying.

    Args:
        client: the client whose waits, ``generate`` calls and batches the
            callbacks wake (through ``client.notify``).
        secret: the shared secret, or several while rotating; default: the
            client's ``webhook_secret``. Without any, callbacks are not
            verified (they still only trigger a confirming status query) and
            repeats are recognised by their delivery id alone. An empty one
            is refused, not taken for "none".
        tolerance: seconds a signed timestamp may be from now, either way.
        clock: "now" for timestamps (default: the client's clock).
        max_body_bytes: the largest body read (default: the client's
            ``Limits.max_response_bytes``).

    Raises:
        ValidationError: ``secret`` is empty (``""``, or no secrets at all),
            or ``tolerance`` is not a positive number of seconds.

    Example:
        >>> receiver = WebhookReceiver(client)  # doctest: +SKIP
        >>> result = await receiver.handle(body, request.headers, request.query)  # doctest: +SKIP
        >>> result.status  # doctest: +SKIP
        200
    """

    def __init__(
        self,
        client: Client,
        *,
        secret: str | Sequence[str] | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Clock | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self._client = client
        self._clock: Clock = clock or client.clock
        secret = secret if secret is not None else client.webhook_secret
        # An empty secret given on purpose is an error (see _as_list), never "unsigned".
        self._verifier = (
            None
            if secret is None
            else WebhookVerifier(secret, tolerance=tolerance, clock=self._clock)
        )
        self._tolerance = _seconds(tolerance, "tolerance")
        self._unsigned_seen = _Seen(_MAX_REMEMBERED)
        self.max_body_bytes = max_body_bytes or client.limits.max_response_bytes

    def __repr__(self) -> str:
        return f"WebhookReceiver(verified={self._verifier is not None})"

    def _admit(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[WebhookResult | None, Callable[[], None]]:
        """Verify (or, unsigned, check the delivery id); the refusal, or how to remember it."""
        if self._verifier is not None:
            verifier = self._verifier
            try:
                checked = verifier._check(body, headers)
            except WebhookVerificationError as exc:
                if exc.reason == "replayed":
                    return WebhookResult(status=200, duplicate=True, reason=exc.reason), _nothing
                logger.info("%s", exc)
                return WebhookResult(status=401, reason=exc.reason), _nothing
            return None, lambda: verifier._remember(checked)
        try:
            delivery = _delivery_id(_lowered(headers))
        except WebhookVerificationError as exc:
            return WebhookResult(status=400, reason=exc.reason), _nothing
        if delivery is None:
            return None, _nothing
        now = self._clock.time()
        self._unsigned_seen.prune(now)
        if delivery in self._unsigned_seen:
            return WebhookResult(status=200, duplicate=True, reason="replayed"), _nothing
        return None, lambda: self._unsigned_seen.add(delivery, now + self._tolerance)

    async def handle(
        self,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
    ) -> WebhookResult:
        """Handle one callback request; never raises for anything the sender controls.

        Args:
            body: the raw request body, exactly as received.
            headers: the request headers (any mapping; names in any case).
            query: the request URL's query parameters (they carry our reference).

        Returns:
            What was done and the status to answer with.
        """
        refused, remember = self._admit(body, headers)
        if refused is not None:
            return refused
        try:
            job = parse_callback(body, headers, max_bytes=self.max_body_bytes)
        except ProtocolError as exc:
            logger.info("webhook callback unreadable: %s", exc)
            return WebhookResult(status=400, reason="body")
        remember()  # only once acted on: a refused delivery may come again
        woken = self._client.notify(job, token=_token_in(job.raw, query))
        return WebhookResult(status=200, woken=woken, job=job)


def aiohttp_app(
    client: Client,
    *,
    secret: str | Sequence[str] | None = None,
    path: str = "",
    tolerance: float = DEFAULT_TOLERANCE,
) -> web.Application:
    """An aiohttp application that receives callbacks, to mount with ``add_subapp``.

    It answers ``POST <prefix><path>`` through a :class:`WebhookReceiver`;
    bodies beyond the client's ``Limits.max_response_bytes`` are refused
    (413) before they are read whole.

    Args:
        client: the client the callbacks wake.
        secret: as for :class:`WebhookReceiver` (default: the client's).
        path: the route inside the sub-app (``""``: the prefix itself, with
            or without a trailing slash).
        tolerance: seconds a signed timestamp may be from now.

    Returns:
        The application.

    Example:
        >>> app.add_subapp("/hooks/video", aiohttp_app(client))  # doctest: +SKIP
    """
    from aiohttp import web

    receiver = WebhookReceiver(client, secret=secret, tolerance=tolerance)
    app = web.Application(client_max_size=receiver.max_body_bytes)

    async def callback(request: web.Request) -> web.Response:
        body = await request.read()
        result = await receiver.handle(body, request.headers, request.query)
        return web.json_response(result.to_json(), status=result.status)

    app.router.add_post(path, callback)
    if path == "":
        app.router.add_post("/", callback)  # the prefix with its trailing slash
    return app
