"""The transport seam and the one retry decision.

A user's own aiohttp session or a transport of their own carries every
request; the rules that must hold whatever the transport (the key stays on the
gateway's origin, retries are decided in one place) sit above the seam.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from asyncvideo import (
    AiohttpTransport,
    AsyncTransport,
    Client,
    ManualClock,
    RetryPolicy,
    Timeouts,
)
from asyncvideo._retry import Retry, RetryDecision
from asyncvideo._transport import HTTPRequest, HTTPResponse
from asyncvideo._transport._connection import origin_of
from asyncvideo.errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    CreateOutcomeUnknown,
    DownloadError,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TimeoutError,
    TransportError,
)
from asyncvideo.testing import FakeGateway

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio

PACKAGE = Path(__file__).resolve().parents[1] / "asyncvideo"


def test_only_the_transport_imports_aiohttp() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] in ("aiohttp", "yarl") for name in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    outside = {name for name in importers if not name.startswith(("_transport/", "testing/"))}
    # The webhook sub-app is an aiohttp *server* (aiohttp_app); the client's requests
    # still all go through the transport.
    assert outside == {"webhooks.py"}
    assert "_transport/_aiohttp.py" in importers


# -- Client(session=...) and Client(transport=...) ---------------------------------------


async def test_a_users_session_carries_the_requests_and_stays_open(
    gateway: FakeGateway, clock: ManualClock, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(headers={"X-Trace": "trace-1"}) as session:
        async with Client(
            api_key=gateway.api_key, base_url=gateway.url, clock=clock, session=session
        ) as client:
            await client.generate(prompt="a cat", model="kling-v1", output=tmp_path / "c.mp4")
        assert not session.closed  # ours to use, not ours to close
        assert {r.headers.get("X-Trace") for r in gateway.requests} == {"trace-1"}


class RecordingTransport:
    """A transport of the user's: wraps the default one and writes down every request."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.sent: list[HTTPRequest] = []

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sent.append(request)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_custom_transport_gets_the_key_rules_for_free(
    gateway: FakeGateway, clock: ManualClock, tmp_path: Path
) -> None:
    gateway.set_config(cdn_redirect=True)  # the content endpoint redirects to the CDN
    transport = RecordingTransport()
    assert isinstance(transport, AsyncTransport)
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, transport=transport
    ) as client:
        path = await client.generate(prompt="a cat", model="sora-2", output=tmp_path / "c.mp4")
    assert path.read_bytes()[4:8] == b"ftyp"
    to_cdn = [r for r in transport.sent if r.url.startswith(gateway.cdn_url)]
    to_gateway = [r for r in transport.sent if r.url.startswith(gateway.url)]
    assert to_cdn
    assert all("Authorization" not in r.headers for r in to_cdn)
    assert all(r.headers["Authorization"] == f"Bearer {gateway.api_key}" for r in to_gateway)
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_transport_and_session_together_are_refused(gateway: FakeGateway) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(Exception, match="not both"):
            Client(
                api_key="k", base_url=gateway.url, session=session, transport=RecordingTransport()
            )


# -- the one retry decision --------------------------------------------------------------


def decision(*, honours_keys: bool = False, attempts: int = 4) -> RetryDecision:
    policy = RetryPolicy(max_attempts=attempts, base_delay=1.0, max_delay=8.0)
    return RetryDecision(
        policy, random.Random(0), ManualClock(), honours_idempotency_keys=honours_keys
    )


def api(cls: type[APIError], status: int) -> APIError:
    return cls("x", status=status)


@pytest.mark.parametrize(
    ("error", "status_query", "create", "download"),
    [
        (ConnectError("refused"), "retry", "retry", "retry"),
        (TimeoutError("slow"), "retry", "unknown", "retry"),
        (TransportError("reset"), "retry", "unknown", "retry"),
        (RateLimitError("slow down", retry_after=None), "retry", "retry", "retry"),
        (api(ServerError, 503), "retry", "unknown", "retry"),
        (api(APIError, 408), "retry", "unknown", "retry"),
        (api(InvalidRequestError, 400), "raise", "raise", "raise"),
        (api(AuthenticationError, 401), "raise", "raise", "raise"),
        (api(NotFoundError, 404), "raise", "raise", "raise"),
        (ProtocolError("not json"), "raise", "unknown", "raise"),
    ],
)
def test_what_may_be_repeated(
    error: APIError | TransportError | ProtocolError,
    status_query: str,
    create: str,
    download: str,
) -> None:
    for kind, expected in (("status", status_query), ("create", create), ("download", download)):
        raised: BaseException | None = None
        try:
            decision().after(kind, 0, error, idempotency_key="key-1")  # type: ignore[arg-type]
        except (APIError, TransportError, ProtocolError, CreateOutcomeUnknown) as exc:
            raised = exc
        outcome = (
            "retry"
            if raised is None
            else "unknown"
            if isinstance(raised, CreateOutcomeUnknown)
            else "raise"
        )
        assert outcome == expected, (kind, error)
        if isinstance(raised, CreateOutcomeUnknown):
            assert raised.idempotency_key == "key-1"


def test_a_gateway_that_honours_keys_gets_ambiguous_creates_again() -> None:
    deciding = decision(honours_keys=True, attempts=3)
    assert deciding.after("create", 0, TransportError("reset")).delay >= 0
    assert deciding.after("create", 1, api(ServerError, 502)).delay >= 0
    with pytest.raises(CreateOutcomeUnknown):  # the budget ends it all the same
        deciding.after("create", 2, TransportError("reset"))
    with pytest.raises(CreateOutcomeUnknown):  # an unreadable success is never sent again
        deciding.after("create", 0, ProtocolError("html"))


def test_budgets_backoff_and_retry_after() -> None:
    deciding = decision(attempts=3)
    assert 0 <= deciding.after("status", 0, TransportError("x")).delay <= 1.0
    assert 0 <= deciding.after("status", 1, TransportError("x")).delay <= 2.0
    assert deciding.after("status", 0, RateLimitError("x", retry_after=7.0)).delay == 7.0
    capped = deciding.after("status", 0, RateLimitError("x", retry_after=86400.0))
    assert capped.delay == RetryPolicy().max_retry_after
    with pytest.raises(TransportError):
        deciding.after("status", 2, TransportError("x"))
    with pytest.raises(DownloadError, match="after 3 attempts"):
        deciding.after("download", 2, TransportError("x"))


def test_a_retry_that_would_start_at_the_deadline_is_not_made() -> None:
    deciding = decision()  # its clock stands at 0
    slow_down = RateLimitError("x", retry_after=2.0)
    assert deciding.after("status", 0, slow_down, deadline=2.5).delay == 2.0
    with pytest.raises(RateLimitError):
        deciding.after("status", 0, slow_down, deadline=2.0)


def test_not_ready_waits_back_off_from_the_first_and_are_not_attempts() -> None:
    not_ready = api(InvalidRequestError, 400)
    not_ready.message = "Task is not completed yet"
    first = decision().after("download", 5, not_ready, not_ready_until=100.0)
    assert first == Retry(RetryPolicy(base_delay=1.0).backoff(0, random.Random(0)), counted=False)


# -- a hostile Retry-After cannot freeze a provider --------------------------------------


@pytest.fixture
async def huge_retry_after() -> AsyncIterator[str]:
    """A gateway whose first status answer is a 429 asking for a day's pause."""
    answered = 0

    async def status(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        if answered == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "86400"}
            )
        return web.json_response({"id": "video_1", "status": "in_progress"})

    app = web.Application()
    app.router.add_get("/v1/videos/{id}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_day_long_retry_after_is_capped(
    huge_retry_after: str, make_client: ClientFactory, clock: ManualClock
) -> None:
    client = make_client(base_url=huge_retry_after, retry_policy=RetryPolicy(max_retry_after=5.0))
    job = await client.get("video_1", model="sora-2")
    assert job.native_status == "in_progress"
    started = clock.monotonic()
    await client.refresh(job)  # the provider's limiter must not wait out the day
    assert clock.monotonic() - started <= 5.0


class BrokenAfterSending:
    """A transport of the user's that breaks its contract: it raises its own errors."""

    def __init__(self, *, fail_sends_to: str, fail_reads_of: str = "") -> None:
        self.inner = AiohttpTransport()
        self.fail_sends_to = fail_sends_to
        self.fail_reads_of = fail_reads_of

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        response = await self.inner.send(request)  # the request has gone out
        if self.fail_sends_to and self.fail_sends_to in request.url:
            await response.aclose()
            raise RuntimeError("my tracing hook broke")
        if self.fail_reads_of and self.fail_reads_of in request.url:
            return BrokenBody(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class BrokenBody:
    def __init__(self, response: HTTPResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers = response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        yield b"\x00\x00"
        raise ValueError("my decoder broke")

    async def read(self, limit: int | None = None) -> bytes:
        raise ValueError("my decoder broke")

    async def aclose(self) -> None:
        await self.response.aclose()


async def test_a_transports_own_error_on_a_create_keeps_the_key(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    transport = BrokenAfterSending(fail_sends_to="/v1/video/generations")
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, transport=transport
    ) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            await client.submit(prompt="a cat", model="kling-v1", idempotency_key="key-9")
    assert caught.value.idempotency_key == "key-9"
    assert "RuntimeError" in str(caught.value)
    assert gateway.stats.creates == 1  # paid for: the key is what finds it again


async def test_a_transports_own_error_while_downloading_is_a_download_error(
    gateway: FakeGateway, clock: ManualClock, tmp_path: Path
) -> None:
    transport = BrokenAfterSending(fail_sends_to="", fail_reads_of="/files/")
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        transport=transport,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    ) as client:
        job = await client.wait(await client.submit(prompt="a cat", model="kling-v1"))
        with pytest.raises(DownloadError) as caught:
            await client.download(job, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []
    assert caught.value.task_id == job.id
    host = urlsplit(gateway.cdn_url).netloc  # the video is on the CDN
    assert f"ValueError from the transport ({host}): my decoder broke" in str(caught.value)


async def test_a_transports_own_error_on_a_status_query_names_the_host_and_the_task(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    transport = BrokenAfterSending(fail_sends_to="/v1/video/generations/")
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        transport=transport,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    ) as client:
        job = await client.submit(prompt="a cat", model="kling-v1")
        with pytest.raises(TransportError) as caught:
            await client.refresh(job)
    host = urlsplit(gateway.url).netloc
    assert str(caught.value) == f"RuntimeError from the transport ({host}): my tracing hook broke"
    assert caught.value.task_id == job.id


class RecordingReads:
    """A transport of the user's that notes the limit of every whole-body read."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.read_limits: list[int | None] = []

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        return ReadRecorder(await self.inner.send(request), self.read_limits)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReadRecorder:
    def __init__(self, response: HTTPResponse, limits: list[int | None]) -> None:
        self.response = response
        self.limits = limits
        self.status = response.status
        self.headers = response.headers

    def iter_bytes(self) -> AsyncIterator[bytes]:
        return self.response.iter_bytes()

    async def read(self, limit: int | None = None) -> bytes:
        self.limits.append(limit)
        return await self.response.read(limit)

    async def aclose(self) -> None:
        await self.response.aclose()


async def test_an_error_answer_to_a_stream_is_read_only_up_to_64_kib(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    transport = RecordingReads()
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, transport=transport
    ) as client:
        with pytest.raises(NotFoundError):
            async with client._connection.stream("/no/such/video", provider="kling"):
                pass
    assert transport.read_limits == [64 * 1024]


async def test_a_429s_retry_after_holds_the_providers_next_request_capped(
    huge_retry_after: str, make_client: ClientFactory, clock: ManualClock
) -> None:
    client = make_client(
        base_url=huge_retry_after, retry_policy=RetryPolicy(max_attempts=1, max_retry_after=5.0)
    )
    with pytest.raises(RateLimitError):
        await client.get("video_1", model="sora-2")
    assert clock.monotonic() == 0.0
    # The next request for the provider waits out the Retry-After, capped at 5 s.
    job = await client.get("video_1", model="sora-2")
    assert job.native_status == "in_progress"
    assert clock.monotonic() == pytest.approx(5.0)
    # The 429 slowed its own provider only: each provider has a limiter of its own.
    assert client._connection.rate_limiter("sora").throttle_count == 1
    assert client._connection.rate_limiter("kling").throttle_count == 0


def test_an_origin_is_scheme_host_and_port_with_defaults_filled_in() -> None:
    assert origin_of("HTTP://Gateway.Example:80/v1") == ("http", "gateway.example", 80)
    assert origin_of("https://gateway.example/v1") == ("https", "gateway.example", 443)
    assert origin_of("http://gateway.example/v1") == ("http", "gateway.example", 80)
    assert origin_of("http://gateway.example:8080") == ("http", "gateway.example", 8080)
    assert origin_of("ftp://gateway.example/") == ("ftp", "gateway.example", None)
    assert origin_of("/relative/only") == ("", "", None)


async def test_paths_join_the_base_url_and_absolute_urls_pass_through(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url + "/apiX//", clock=clock
    ) as client:
        connection = client._connection
        assert connection.base_url == gateway.url + "/apiX/"
        assert connection.url("/v1/videos") == gateway.url + "/apiX/v1/videos"
        assert connection.url("v1/videos") == gateway.url + "/apiX/v1/videos"
        assert connection.url("//XL/v1") == gateway.url + "/apiX/XL/v1"  # only slashes go
        assert connection.url("https://cdn.example/v.mp4") == "https://cdn.example/v.mp4"
        assert repr(connection) == f"<GatewayConnection {gateway.url}/apiX/>"
        assert connection.rate_limiter("kling") is connection.rate_limiter("kling")
        assert connection.rate_limiter("kling") is not connection.rate_limiter("sora")


async def test_the_key_goes_to_the_gateways_origin_however_the_url_is_spelled(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    transport = RecordingTransport()
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, transport=transport
    ) as client:
        shouted = gateway.url.replace("http://", "HTTP://")
        for url in (shouted + "/no/such/video", "http://localhost:9/no/such/video"):
            with contextlib.suppress(APIError, TransportError):
                async with client._connection.stream(url, provider="kling"):
                    pass
    with_key = ["Authorization" in request.headers for request in transport.sent]
    assert with_key == [True, False]


class StepClock:
    """A clock that is not a ManualClock (so timeouts apply) and that time never moves."""

    def monotonic(self) -> float:
        return 100.0

    def time(self) -> float:
        return 1_700_000_000.0

    async def sleep(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize(
    ("deadline", "request_timeout", "sent_timeout"),
    [
        (None, 2.0, 2.0),  # no deadline: Timeouts.request as it is
        (103.0, 2.0, 2.0),  # the timeout ends before the deadline: kept
        (103.0, 120.0, 3.0),  # cut to the 3 s left
        (100.01, 120.0, 0.05),  # at the deadline: the last look gets a short attempt
    ],
)
async def test_a_request_timeout_is_cut_to_what_is_left_of_a_deadline(
    gateway: FakeGateway,
    deadline: float | None,
    request_timeout: float,
    sent_timeout: float,
) -> None:
    transport = RecordingTransport()
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=StepClock(),
        transport=transport,
        timeouts=Timeouts(request=request_timeout),
        retry_policy=RetryPolicy(max_attempts=1),
    ) as client:
        with pytest.raises(NotFoundError):
            await client._connection.request_json(
                "GET", "/v1/videos/video_none", provider="sora", kind="status", deadline=deadline
            )
    assert [request.timeout for request in transport.sent] == [pytest.approx(sent_timeout)]


async def test_a_retry_is_logged_at_debug_with_method_path_and_wait(
    client: Client, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    gateway.script_failures("status", [503])
    caplog.set_level(logging.DEBUG, logger="asyncvideo")
    await client.refresh(job)
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 1
    pattern = rf"retrying GET /v1/video/generations/{job.id} in \d+\.\d{{3}}s"
    assert re.fullmatch(pattern, retries[0])


async def test_a_status_query_that_cannot_connect_names_its_task(clock: ManualClock) -> None:
    async with Client(
        api_key="sk-test",
        base_url="http://127.0.0.1:9",  # nothing listens on the discard port
        clock=clock,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    ) as client:
        with pytest.raises(ConnectError) as caught:
            await client.get("video_7", model="sora-2")
    assert caught.value.task_id == "video_7"


@pytest.fixture
async def array_status() -> AsyncIterator[str]:
    """A gateway whose status answer is JSON, but a list instead of an object."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    app = web.Application()
    app.router.add_get("/v1/videos/{id}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_json_that_is_not_an_object_is_a_protocol_error_saying_so(
    array_status: str, make_client: ClientFactory
) -> None:
    client = make_client(base_url=array_status)
    with pytest.raises(ProtocolError) as caught:
        await client.get("video_1", model="sora-2")
    assert str(caught.value) == (
        "expected a JSON object from GET /v1/videos/video_1, got 9 bytes of something else"
    )
    assert caught.value.status == 200


@pytest.fixture
async def redirecting() -> AsyncIterator[str]:
    """``/hop/{n}/{status}`` redirects ``n`` times (relative Locations) before the video."""

    async def hop(request: web.Request) -> web.Response:
        left, status = int(request.match_info["n"]), int(request.match_info["status"])
        if left == 0:
            return web.Response(body=b"video bytes", headers={"Location": "/elsewhere"})
        return web.Response(status=status, headers={"Location": f"../{left - 1}/{status}"})

    app = web.Application()
    app.router.add_get("/hop/{n}/{status}", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def read_stream(client: Client, url: str) -> bytes:
    async with client._connection.stream(url, provider="sora") as response:
        return b"".join([chunk async for chunk in response.iter_bytes()])


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_five_redirects_of_any_kind_are_followed(
    redirecting: str, make_client: ClientFactory, status: int
) -> None:
    client = make_client(base_url=redirecting)
    # A Location on a 200 is not a redirect: the body is the answer.
    assert await read_stream(client, f"/hop/5/{status}") == b"video bytes"


async def test_a_sixth_redirect_is_a_protocol_error(
    redirecting: str, make_client: ClientFactory
) -> None:
    client = make_client(base_url=redirecting)
    with pytest.raises(ProtocolError) as caught:
        await read_stream(client, "/hop/6/302")
    assert str(caught.value) == "more than 5 redirects fetching the video"


class BrokenClose(RecordingTransport):
    """A transport of the user's whose responses fail to close."""

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        return FailingClose(await super().send(request))


class FailingClose(ReadRecorder):
    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(response, [])

    async def aclose(self) -> None:
        await self.response.aclose()
        raise RuntimeError("pool\nbroke")


async def test_a_response_that_fails_to_close_still_gives_its_answer(
    gateway: FakeGateway, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncvideo")
    async with Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, transport=BrokenClose()
    ) as client:
        job = await client.submit(prompt="a cat", model="kling-v1")
    assert job.id
    closing = [r.getMessage() for r in caplog.records if "clos" in r.getMessage()]
    assert closing == ["closing a response failed: pool\\nbroke"]


async def test_a_transports_own_error_reading_an_error_page_names_the_task(
    gateway: FakeGateway, clock: ManualClock, tmp_path: Path
) -> None:
    transport = BrokenAfterSending(fail_sends_to="", fail_reads_of="/files/")
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        transport=transport,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    ) as client:
        job = await client.wait(await client.submit(prompt="a cat", model="kling-v1"))
        gateway.script_failures("cdn", [500, 500])  # error pages whose reading breaks
        with pytest.raises(DownloadError) as caught:
            await client.download(job, tmp_path / "clip.mp4")
    assert caught.value.task_id == job.id
    assert "ValueError from the transport" in str(caught.value)


async def test_a_transports_own_error_reading_a_status_answer_names_host_and_task(
    gateway: FakeGateway, clock: ManualClock
) -> None:
    transport = BrokenAfterSending(fail_sends_to="", fail_reads_of="/v1/video/generations/")
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        transport=transport,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    ) as client:
        job = await client.submit(prompt="a cat", model="kling-v1")
        with pytest.raises(TransportError) as caught:
            await client.refresh(job)
    host = urlsplit(gateway.url).netloc
    assert str(caught.value) == f"ValueError from the transport ({host}): my decoder broke"
    assert caught.value.task_id == job.id
