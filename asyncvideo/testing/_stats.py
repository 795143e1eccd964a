"""Counters the gateway keeps, and the requests it captured for tests to inspect."""

from __future__ import annotations

from typing import Any

import attrs

from ._faults import RequestKind

__all__ = ["CapturedRequest", "GatewayStats"]

_KINDS: tuple[RequestKind, ...] = ("create", "status", "content", "cdn", "other")


def _per_kind() -> dict[str, int]:
    return dict.fromkeys(_KINDS, 0)


@attrs.define(kw_only=True)
class GatewayStats:
    """Live counters; ``GET /_sim/stats`` serves :meth:`to_dict` (``/_sim`` itself is not counted).

    Attributes:
        requests: requests per endpoint kind (create, status, content, cdn, other).
        routes: requests per ``"METHOD /route/{param}"``.
        responses: responses per HTTP status.
        create_requests: every create request received, whatever its answer
            (rejected, failed, replayed or new); ``creates`` counts new tasks.
        creates: tasks actually created.
        creates_by_model: tasks created per model.
        idempotency_replays: creates answered with an existing task.
        rate_limited: 429 answers (rate limit and concurrency bound).
        server_errors: 5xx answers (random and scripted).
        auth_failures: 401 answers.
        dropped_connections: connections closed without a full answer.
        connections: client connections that sent a request (by client address
            and port): a pool that reuses its connections keeps this small.
        bytes_served: video body bytes written (API content endpoint and CDN).
        downloads_completed: video bodies written to the end.
        in_flight / max_in_flight: requests being served now / at most, per kind.
        max_active_tasks: most unfinished tasks at once, per API key.
        cdn_requests_with_auth: CDN requests carrying an Authorization header.
        webhook_deliveries / webhook_failures: callback POSTs answered 2xx / not
            (or not answered); forged ones are not counted here.
        webhook_retries: callback POSTs that were retries of a failed one.
        webhook_dropped: callbacks never sent (``webhook_drop_rate``).
        webhook_duplicated: callbacks sent a second time (``webhook_duplicate_rate``).
        webhook_forged: forged callbacks sent (``webhook_forge_rate``).
    """

    requests: dict[str, int] = attrs.field(factory=_per_kind)
    routes: dict[str, int] = attrs.field(factory=dict)
    responses: dict[int, int] = attrs.field(factory=dict)
    create_requests: int = 0
    creates: int = 0
    creates_by_model: dict[str, int] = attrs.field(factory=dict)
    idempotency_replays: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    auth_failures: int = 0
    dropped_connections: int = 0
    connections: int = 0
    bytes_served: int = 0
    downloads_completed: int = 0
    in_flight: dict[str, int] = attrs.field(factory=_per_kind)
    max_in_flight: dict[str, int] = attrs.field(factory=_per_kind)
    max_active_tasks: dict[str, int] = attrs.field(factory=dict)
    cdn_requests_with_auth: int = 0
    webhook_deliveries: int = 0
    webhook_failures: int = 0
    webhook_retries: int = 0
    webhook_dropped: int = 0
    webhook_duplicated: int = 0
    webhook_forged: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def record_response(self, status: int) -> None:
        self.responses[status] = self.responses.get(status, 0) + 1
        if status == 429:
            self.rate_limited += 1
        elif status >= 500:
            self.server_errors += 1
        elif status == 401:
            self.auth_failures += 1

    def to_dict(self) -> dict[str, object]:
        data = attrs.asdict(self)
        data["responses"] = {str(status): n for status, n in sorted(self.responses.items())}
        data["total_requests"] = self.total_requests
        return data

    def reset(self) -> None:
        """Zero every counter in place (in-flight gauges keep their live values)."""
        fresh = GatewayStats(in_flight=self.in_flight)
        for field in attrs.fields(GatewayStats):
            setattr(self, field.name, getattr(fresh, field.name))


@attrs.define(kw_only=True)
class CapturedRequest:
    """One request as the gateway received it.

    ``json`` is the parsed JSON body (any JSON value); ``form`` holds the text
    fields of a multipart or urlencoded body, ``files`` its uploads as
    ``field -> (filename, content_type, bytes)``. ``status`` is the answer's
    HTTP status (``None`` while it is being served or when the connection was dropped).
    """

    method: str
    path: str
    kind: RequestKind
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = attrs.field(factory=dict)
    files: dict[str, tuple[str, str, bytes]] = attrs.field(factory=dict)
    status: int | None = None
