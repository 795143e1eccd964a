"""Receiving webhooks: parse_callback, the signature scheme, the receiver and the aiohttp app.

Bodies come from the FakeGateway itself where it can make them (every
profile and endpoint family), verification runs on a ManualClock, and the end
to end tests deliver from a FakeGateway to :func:`asyncvideo.webhooks.aiohttp_app`
mounted in a real aiohttp server on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from anyio.abc import TaskGroup

from asyncvideo import Client, Job, JobError, JobState, ManualClock, webhooks
from asyncvideo.errors import ProtocolError, ValidationError, WebhookVerificationError
from asyncvideo.providers import PROVIDERS
from asyncvideo.testing import FakeGateway, GatewayConfig
from asyncvideo.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookReceiver,
    WebhookVerifier,
    parse_callback,
    sign,
)

from .conftest import HeldClock

pytestmark = pytest.mark.anyio

KEY = "sk-hooks-test-key-0123456789"
SECRET = "whsec-test-secret-0123456789"
START = 1_767_225_600.0
Json = dict[str, Any]


def _body(payload: Json) -> bytes:
    return json.dumps(payload).encode()


# -- parse_callback: the bodies providers and gateways send ------------------------------

VIDU_SUCCESS: Json = {
    "id": "vidu_812345678901234567",
    "state": "success",
    "err_code": "",
    "credits": 4,
    "payload": "our-reference",
    "bgm": False,
    "off_peak": False,
    "creations": [
        {
            "id": "c1",
            "url": "https://cdn.vidu.example/a.mp4",
            "cover_url": "https://cdn.vidu.example/a.jpg",
            "watermarked_url": "https://cdn.vidu.example/a-wm.mp4",
        }
    ],
}
KLING_CALLBACK: Json = {
    "task_id": "CjhW1mdXE9oAAAAAAtVhYA",
    "task_status": "succeed",
    "task_status_msg": "",
    "created_at": 1722769557708,
    "updated_at": 1722769558708,
    "task_result": {"videos": [{"id": "v1", "url": "https://cdn.kling.example/v.mp4"}]},
}


def test_vidu_callback_body() -> None:
    job = parse_callback(_body(VIDU_SUCCESS))
    assert (job.id, job.provider, job.model) == ("vidu_812345678901234567", "vidu", "")
    assert job.state is JobState.SUCCEEDED
    assert job.video_url == "https://cdn.vidu.example/a.mp4"
    assert job.raw["payload"] == "our-reference"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("created", JobState.QUEUED),
        ("queueing", JobState.RUNNING),
        ("processing", JobState.RUNNING),
        ("failed", JobState.FAILED),
    ],
)
def test_vidu_callback_states(state: str, expected: JobState) -> None:
    body = {**VIDU_SUCCESS, "state": state, "creations": []}
    if state == "failed":
        body["err_code"] = "AuditSubmitIllegal"
    job = parse_callback(_body(body), model="viduq1")
    assert job.state is expected
    assert job.model == "viduq1"
    assert job.video_url is None
    if state == "failed":
        assert job.error == JobError(code="AuditSubmitIllegal", message="AuditSubmitIllegal")


def test_kling_callback_body() -> None:
    job = parse_callback(json.dumps(KLING_CALLBACK))
    assert (job.id, job.provider, job.state) == (
        "CjhW1mdXE9oAAAAAAtVhYA",
        "kling",
        JobState.SUCCEEDED,
    )
    assert job.video_url == "https://cdn.kling.example/v.mp4"
    failed = {**KLING_CALLBACK, "task_status": "failed", "task_status_msg": "risk control"}
    assert parse_callback(failed).error == JobError(code=None, message="risk control")


def test_model_and_provider_come_from_the_body_or_the_caller() -> None:
    sora = {"id": "video_1", "object": "video", "model": "sora-2", "status": "completed"}
    job = parse_callback(_body(sora))
    assert (job.model, job.provider) == ("sora-2", "sora")
    # A relay's envelope names the model inside.
    wrapped = {"code": "success", "message": "", "data": {**sora, "task_id": "task_9"}}
    assert (parse_callback(wrapped).model, parse_callback(wrapped).id) == ("sora-2", "task_9")
    bare = {"task_id": "t1", "status": "succeeded", "url": "https://cdn.example/t1.mp4"}
    assert (parse_callback(bare).model, parse_callback(bare).provider) == ("", "")
    assert parse_callback(bare, model="kling-v1").provider == "kling"
    assert parse_callback(bare, model="my-model", provider="wan").provider == "wan"
    unknown = parse_callback({**sora, "model": "brand-new-model"})
    assert (unknown.model, unknown.provider) == ("brand-new-model", "")


@pytest.mark.parametrize("profile", ["seeds", "new-api", "litellm"])
@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("sora-2", "/v1/videos"),
        ("kling-v1", "/v1/video/generations"),
        ("wan2.5-t2v-preview", "/v1/videos/generations"),
    ],
)
async def test_every_gateway_job_object_reads_as_its_status_answer_does(
    profile: str, model: str, path: str
) -> None:
    # The gateway's callback body is its job object: whatever a status answer
    # says, parse_callback reads the same way the client reads it.
    clock = ManualClock(start=START)
    async with (
        FakeGateway(api_key=KEY, clock=clock, durations=10.0, profile=profile) as gw,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        form = aiohttp.FormData({"model": model, "prompt": "a cat"})
        payload: Any = form if path == "/v1/videos" else None
        body: Any = None if path == "/v1/videos" else {"model": model, "prompt": "a cat"}
        async with http.post(gw.url + path, data=payload, json=body) as response:
            await response.json()
        task_id = next(iter(gw.tasks))
        clock.advance(11)
        async with http.get(f"{gw.url}{path}/{task_id}") as response:
            status_body = await response.read()
    job = parse_callback(status_body, model=model)
    assert job.provider == {"sora-2": "sora", "kling-v1": "kling"}.get(model, "wan")
    assert job == PROVIDERS[job.provider].parse(json.loads(status_body), model=model)
    assert job.state is JobState.SUCCEEDED
    if profile == "litellm":
        # LiteLLM re-encodes the id after the create: only our reference can match it.
        assert job.id != task_id
    else:
        assert job.id == task_id
    if profile == "seeds" and path != "/v1/videos":
        assert job.video_url is not None
        assert job.video_url.startswith(gw.cdn_url)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deep"),
        (b'{"status": "succeeded"}', "names no task id"),
        (b'{"id": "..", "status": "succeeded"}', "no URL can name"),
    ],
)
def test_bad_bodies_are_a_protocol_error(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_callback(body)


def test_bodies_are_bounded_and_never_decompressed() -> None:
    body = _body({"id": "t", "status": "queued", "pad": "x" * 2000})
    with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
        parse_callback(body, max_bytes=1000)
    with pytest.raises(ProtocolError, match="gzip-encoded"):
        parse_callback(body, {"Content-Encoding": "gzip"})
    assert parse_callback(body, {"content-encoding": "identity"}).id == "t"


# -- the signature scheme ------------------------------------------------------------------


def _reference_headers(body: bytes, secret: str, stamp: int, delivery: str) -> dict[str, str]:
    """The scheme written out by hand, so a bug in ``sign`` cannot hide in both sides."""
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: f"v1={digest}",
        DELIVERY_HEADER: delivery,
    }


BODY = _body(VIDU_SUCCESS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


@pytest.fixture
def verifier(clock: ManualClock) -> WebhookVerifier:
    return WebhookVerifier(SECRET, clock=clock)


def test_sign_matches_the_scheme_written_out() -> None:
    headers = sign(BODY, SECRET, timestamp=START + 0.9, delivery_id="dlv_1")
    assert headers == _reference_headers(BODY, SECRET, int(START), "dlv_1")
    assert DELIVERY_HEADER not in sign(BODY, SECRET, timestamp=START)


def test_a_good_signature_is_accepted_once(verifier: WebhookVerifier) -> None:
    headers = _reference_headers(BODY, SECRET, int(START), "dlv_1")
    verifier.verify(BODY, headers)
    with pytest.raises(WebhookVerificationError) as caught:
        verifier.verify(BODY, headers)
    assert caught.value.reason == "replayed"
    # Header names in any case (a plain dict from a framework that lowercases them).
    another = _reference_headers(BODY, SECRET, int(START) + 1, "d2")
    lowered = {k.lower(): v for k, v in another.items()}
    verifier.verify(BODY, lowered)


def _refusal(verifier: WebhookVerifier, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        verifier.verify(body, headers)
    assert SECRET not in str(caught.value)
    return caught.value.reason


def test_each_forgery_is_refused_with_the_one_error(
    verifier: WebhookVerifier, clock: ManualClock
) -> None:
    now = int(START)
    good = _reference_headers(BODY, SECRET, now, "dlv_1")
    assert _refusal(verifier, BODY, _reference_headers(BODY, "wrong", now, "d")) == "signature"
    assert _refusal(verifier, BODY.replace(b"success", b"failed!"), good) == "signature"
    assert _refusal(verifier, BODY, {**good, TIMESTAMP_HEADER: str(now + 1)}) == "signature"
    stale = _reference_headers(BODY, SECRET, now - 301, "d")
    assert _refusal(verifier, BODY, stale) == "stale"
    future = _reference_headers(BODY, SECRET, now + 301, "d")
    assert _refusal(verifier, BODY, future) == "future"
    for name in (TIMESTAMP_HEADER, SIGNATURE_HEADER):
        missing = {k: v for k, v in good.items() if k != name}
        assert _refusal(verifier, BODY, missing) == "missing"
    for name, value in [
        (TIMESTAMP_HEADER, "yesterday"),
        (TIMESTAMP_HEADER, "1" * 13),
        (SIGNATURE_HEADER, "v0=abc"),
        (SIGNATURE_HEADER, "v1=" + "a" * 3000),
        (DELIVERY_HEADER, "x" * 201),
    ]:
        assert _refusal(verifier, BODY, {**good, name: value}) == "malformed"
    # None of that was remembered: the genuine delivery is still accepted.
    verifier.verify(BODY, good)


def test_the_window_is_five_minutes_either_way(
    verifier: WebhookVerifier, clock: ManualClock
) -> None:
    now = int(START)
    verifier.verify(BODY, _reference_headers(BODY, SECRET, now - 300, "old"))
    verifier.verify(BODY, _reference_headers(BODY, SECRET, now + 300, "new"))
    strict = WebhookVerifier(SECRET, tolerance=10, clock=clock)
    assert _refusal(strict, BODY, _reference_headers(BODY, SECRET, now - 11, "d")) == "stale"
    # now= overrides the clock.
    verifier.verify(BODY, _reference_headers(BODY, SECRET, 1000, "d"), now=1000.0)


def test_a_copy_under_a_new_delivery_id_is_a_replay(verifier: WebhookVerifier) -> None:
    headers = _reference_headers(BODY, SECRET, int(START), "dlv_1")
    verifier.verify(BODY, headers)
    assert _refusal(verifier, BODY, {**headers, DELIVERY_HEADER: "dlv_2"}) == "replayed"
    assert _refusal(verifier, BODY, {k: v for k, v in headers.items() if k != DELIVERY_HEADER})
    # A retry of the delivery, signed afresh a second later, is a replay too.
    retry = _reference_headers(BODY, SECRET, int(START) + 1, "dlv_1")
    assert _refusal(verifier, BODY, retry) == "replayed"


def test_replays_are_remembered_only_within_the_window(
    verifier: WebhookVerifier, clock: ManualClock
) -> None:
    headers = _reference_headers(BODY, SECRET, int(START), "dlv_1")
    verifier.verify(BODY, headers)
    clock.advance(301)
    # Past the window the copy is stale, and the memory of it has been let go.
    assert _refusal(verifier, BODY, headers) == "stale"
    assert len(verifier._seen._expiry) == 0
    fresh = _reference_headers(BODY, SECRET, int(clock.time()), "dlv_1")
    verifier.verify(BODY, fresh)  # the id may come back in a new window


def test_rotating_secrets() -> None:
    clock = ManualClock(start=START)
    now = int(START)
    # Receiver knows the old and the new secret: either signature is enough.
    both = WebhookVerifier(["new-secret", SECRET], clock=clock)
    both.verify(BODY, _reference_headers(BODY, SECRET, now, "a"))
    both.verify(BODY, _reference_headers(BODY, "new-secret", now, "b"))
    # Sender signs with both; a receiver that already moved on accepts it.
    headers = sign(BODY, ["new-secret", SECRET], timestamp=START, delivery_id="c")
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    WebhookVerifier("new-secret", clock=clock).verify(BODY, headers)
    # Once the old secret is dropped, its signatures are refused.
    only_new = WebhookVerifier("new-secret", clock=clock)
    assert _refusal(only_new, BODY, _reference_headers(BODY, SECRET, now, "d")) == "signature"


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValidationError):
        WebhookVerifier("")
    with pytest.raises(ValidationError):
        WebhookVerifier([])
    with pytest.raises(ValidationError):
        WebhookVerifier(SECRET, tolerance=0)
    with pytest.raises(ValidationError):
        WebhookVerifier(SECRET, tolerance=float("nan"))
    assert SECRET not in repr(WebhookVerifier(SECRET))


def test_the_module_is_public() -> None:
    assert webhooks.parse_callback is parse_callback


# -- the FakeGateway's deliveries ----------------------------------------------------------


class Hook:
    """A loopback endpoint that records each callback and answers scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[tuple[bytes, dict[str, str], dict[str, str]]] = []
        self.statuses = list(statuses or [])
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers), dict(request.query)))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    async def __aenter__(self) -> Hook:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (real time, bounded) for something that travels over real sockets."""
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - polling counters, not an event
            await asyncio.sleep(0.005)


async def _settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0.002)


async def _create_with_callback(gw: FakeGateway, url: str, model: str = "viduq1") -> str:
    # Our reference rides in each provider's pass-through field.
    metadata = {
        "callback_url": url,
        "payload": "our-reference",
        "external_task_id": "our-reference",
    }
    request = {"model": model, "prompt": "a cat", "metadata": metadata}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gw.url}/v1/video/generations",
            json=request,
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        created = await response.json()
    task_id = created["task_id"]
    assert isinstance(task_id, str)
    return task_id


async def test_fake_signs_each_delivery_and_sends_vidus_own_body(clock: ManualClock) -> None:
    async with (
        Hook() as hook,
        FakeGateway(api_key=KEY, clock=clock, durations=10.0, webhook_secret=SECRET) as gw,
    ):
        task_id = await _create_with_callback(gw, hook.url + "?asyncvideo_token=tok")
        await _settle()
        assert hook.received == []  # nothing before the task ends
        clock.advance(10)
        await _until(lambda: gw.stats.webhook_deliveries == 1)
    body, headers, query = hook.received[0]
    WebhookVerifier(SECRET, clock=clock).verify(body, headers)
    assert query == {"asyncvideo_token": "tok"}
    job = parse_callback(body)
    assert (job.id, job.provider, job.state) == (task_id, "vidu", JobState.SUCCEEDED)
    assert job.raw["payload"] == "our-reference"
    assert job.video_url == gw.video_url(task_id)


async def test_fake_sends_klings_own_body_and_the_gateways_job_for_others(
    clock: ManualClock,
) -> None:
    async with (
        Hook() as hook,
        FakeGateway(api_key=KEY, clock=clock, durations=10.0, profile="new-api") as gw,
    ):
        jimeng_id = await _create_with_callback(gw, hook.url, model="jimeng_vgfm_t2v_l20")
        kling_id = await _create_with_callback(gw, hook.url, model="kling-v1")
        clock.advance(10)
        await _until(lambda: gw.stats.webhook_deliveries == 2)
    by_shape = {("task_status" in json.loads(body)): body for body, _, _ in hook.received}
    assert all(SIGNATURE_HEADER not in headers for _, headers, _ in hook.received)  # no secret

    relayed = by_shape[False]
    assert json.loads(relayed)["code"] == "success"  # new-api's envelope around its TaskDto
    job = parse_callback(relayed, model="jimeng_vgfm_t2v_l20")
    assert (job.id, job.state) == (jimeng_id, JobState.SUCCEEDED)

    # Kling calls back itself: its own task id (not the relay's) and our reference.
    kling = parse_callback(by_shape[True])
    assert (kling.provider, kling.state) == ("kling", JobState.SUCCEEDED)
    assert kling.id == gw.tasks[kling_id].upstream_id != kling_id
    assert kling.raw["task_info"] == {"external_task_id": "our-reference"}
    assert kling.video_url == gw.video_url(kling_id)


async def test_fake_retries_with_backoff_on_its_clock(clock: ManualClock) -> None:
    async with (
        Hook(statuses=[500, 503, 502]) as hook,
        FakeGateway(api_key=KEY, clock=clock, durations=10.0, webhook_secret=SECRET) as gw,
    ):
        await _create_with_callback(gw, hook.url)
        clock.advance(10)
        await _until(lambda: gw.stats.webhook_failures == 1)
        await _settle()
        assert len(hook.received) == 1  # the retry waits for the clock
        for backoff, sent in [(1.0, 2), (2.0, 3), (4.0, 4)]:
            clock.advance(backoff)
            await _until(lambda sent=sent: len(hook.received) == sent)  # type: ignore[misc]
        await _until(lambda: gw.stats.webhook_deliveries == 1)
        stats = gw.stats
        assert (stats.webhook_failures, stats.webhook_retries) == (3, 3)
    ids = {headers[DELIVERY_HEADER] for _, headers, _ in hook.received}
    stamps = [int(headers[TIMESTAMP_HEADER]) for _, headers, _ in hook.received]
    assert len(ids) == 1  # one delivery, kept across retries
    assert stamps == sorted(stamps)
    assert stamps[0] < stamps[-1]


async def test_fake_gives_up_after_three_retries(clock: ManualClock) -> None:
    async with (
        Hook(statuses=[500] * 10) as hook,
        FakeGateway(api_key=KEY, clock=clock, durations=10.0) as gw,
    ):
        await _create_with_callback(gw, hook.url)
        clock.advance(10)
        for _ in range(6):
            await _settle()
            clock.advance(10)
        await _until(lambda: gw.stats.webhook_failures == 4)
        await _settle()
        assert len(hook.received) == 4
        assert gw.stats.webhook_retries == 3


async def test_fake_drops_duplicates_delays_and_forges_on_demand(clock: ManualClock) -> None:
    async with Hook() as hook, FakeGateway(api_key=KEY, clock=clock, durations=10.0) as gw:
        gw.set_config(webhook_drop_rate=1.0)
        await _create_with_callback(gw, hook.url)
        clock.advance(10)
        await _until(lambda: gw.stats.webhook_dropped == 1)
        gw.set_config(webhook_drop_rate=0.0, webhook_duplicate_rate=1.0)
        await _create_with_callback(gw, hook.url)
        clock.advance(10)
        await _until(lambda: len(hook.received) == 2)
        assert hook.received[0] == hook.received[1]  # the same delivery, byte for byte
        assert gw.stats.webhook_duplicated == 1
        gw.set_config(webhook_duplicate_rate=0.0, webhook_delay=60.0, webhook_secret=SECRET)
        task_id = await _create_with_callback(gw, hook.url)
        clock.advance(10)
        await _settle()
        assert len(hook.received) == 2  # delayed
        clock.advance(60)
        await _until(lambda: len(hook.received) == 3)
        gw.set_config(webhook_delay=0.0, webhook_forge_rate=1.0)
        forged_for = await _create_with_callback(gw, hook.url)
        await _until(lambda: len(hook.received) == 4)  # at once, before the task ends
        assert gw.stats.webhook_forged == 1
    body, headers, _ = hook.received[3]
    assert parse_callback(body).id == forged_for != task_id
    assert parse_callback(body).state is JobState.SUCCEEDED  # it claims success
    with pytest.raises(WebhookVerificationError) as caught:
        WebhookVerifier(SECRET, clock=clock).verify(body, headers)
    assert caught.value.reason == "signature"


def test_the_standalone_fake_signs_callbacks_when_asked() -> None:
    from asyncvideo.testing.__main__ import _config, _parser

    assert _config(_parser().parse_args([])).webhook_secret is None
    assert _config(_parser().parse_args(["--webhook-secret", SECRET])).webhook_secret == SECRET


def test_fake_webhook_knobs_are_validated() -> None:
    for bad in ({"webhook_drop_rate": 1.5}, {"webhook_retries": -1}, {"webhook_secret": ""}):
        with pytest.raises(ValueError):  # noqa: PT011 - attrs' own messages
            GatewayConfig(**bad)


# -- the receiver and the aiohttp sub-app, wired to a client ---------------------------------

REMOTE_HOOK = "https://app.example/hooks/video"  # never called: the fake calls loopback only


@pytest.fixture
async def held_gateway(held: HeldClock) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(clock=held, api_key=KEY, durations=20.0, video_bytes=16 * 1024) as gw:
        yield gw


def _statuses(gw: FakeGateway) -> int:
    return gw.stats.requests["status"]


def _vidu_callback(task_id: str, reference: str) -> bytes:
    return _body({**VIDU_SUCCESS, "id": task_id, "payload": reference})


async def test_the_receiver_acts_on_a_genuine_callback_only(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    gw = held_gateway
    async with Client(
        api_key=KEY, base_url=gw.url, clock=held, webhook_url=REMOTE_HOOK, webhook_secret=SECRET
    ) as client:
        receiver = WebhookReceiver(client)
        job = await client.submit(prompt="a cat", model="viduq1", idempotency_key="ref-1")
        body = _vidu_callback(job.id, "ref-1")
        query = {"asyncvideo_token": "ref-1"}
        done: list[Job] = []

        async def wait() -> None:
            done.append(await client.wait(job))

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await _settle()
            held.advance(25.0)  # the task has ended; only a callback or a safety poll tells
            now = int(held.time())
            refused = [
                (body, _reference_headers(body, "not-the-secret", now, "d1")),
                (body.replace(b"success", b"failed!"), _reference_headers(body, SECRET, now, "d2")),
                (body, _reference_headers(body, SECRET, now - 301, "d3")),
                (body, _reference_headers(body, SECRET, now + 301, "d4")),
                (body, {TIMESTAMP_HEADER: str(now), DELIVERY_HEADER: "d5"}),
            ]
            for forged_body, headers in refused:
                result = await receiver.handle(forged_body, headers, query)
                assert (result.status, result.woken, result.job) == (401, False, None)
            unreadable = b'{"state": "success"}'  # signed, but names no task
            result = await receiver.handle(
                unreadable, _reference_headers(unreadable, SECRET, now, "d6"), query
            )
            assert (result.status, result.reason) == (400, "body")
            await _settle()
            assert _statuses(gw) == 0  # nothing refused sent a request
            assert done == []

            genuine = _reference_headers(body, SECRET, now, "d7")
            result = await receiver.handle(body, genuine, query)
            assert (result.status, result.woken, result.duplicate) == (200, True, False)
            assert result.to_json() == {"ok": True, "woken": True, "duplicate": False}
            await _until(lambda: bool(done))
            again = await receiver.handle(body, genuine, query)
            assert (again.status, again.woken, again.duplicate) == (200, False, True)
    assert done[0].state is JobState.SUCCEEDED
    assert _statuses(gw) == 1  # the one confirming query


async def test_an_unsigned_receiver_still_ignores_repeated_deliveries(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as client:
        receiver = WebhookReceiver(client)
        job = await client.submit(prompt="a cat", model="viduq1", idempotency_key="ref-1")
        body = _vidu_callback(job.id, "ref-1")
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait, job)
            await _settle()
            held.advance(25.0)
            # No query: the reference comes from Vidu's payload field.
            first = await receiver.handle(body, {DELIVERY_HEADER: "d1"})
            second = await receiver.handle(body, {DELIVERY_HEADER: "d1"})
        assert (first.woken, second.duplicate) == (True, True)
        assert _statuses(held_gateway) == 1
        # A different delivery of a finished job is accepted and wakes nothing.
        late = await receiver.handle(body, {"x-asyncvideo-delivery": "d2"})
        assert (late.status, late.woken, late.duplicate) == (200, False, False)
        bad = await receiver.handle(body, {DELIVERY_HEADER: "x" * 500})
        assert bad.status == 400


async def test_klings_reference_is_read_from_its_task_info(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as client:
        receiver = WebhookReceiver(client)
        job = await client.submit(prompt="a cat", model="kling-v1", idempotency_key="ref-k")
        # Kling's own id, not the gateway's: only the reference names our job.
        body = {**KLING_CALLBACK, "task_info": {"external_task_id": "ref-k"}}
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait, job)
            await _settle()
            held.advance(25.0)
            result = await receiver.handle(_body(body), {})
        assert result.woken is True
        assert result.job is not None
        assert result.job.id == KLING_CALLBACK["task_id"] != job.id
        assert _statuses(held_gateway) == 1


class HookServer:
    """A real aiohttp server on loopback with :func:`webhooks.aiohttp_app` mounted in it."""

    PREFIX = "/hooks/video"

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}{self.PREFIX}"
        self._runner: web.AppRunner | None = None

    async def serve(self, client: Client) -> None:
        app = web.Application()
        app.add_subapp(self.PREFIX, webhooks.aiohttp_app(client))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._sock.close()


@pytest.fixture
async def hook_server() -> AsyncIterator[HookServer]:
    server = HookServer()
    yield server
    await server.close()


@asynccontextmanager
async def _wired(
    server: HookServer, clock: HeldClock, **gateway: Any
) -> AsyncIterator[tuple[FakeGateway, Client]]:
    """A signing FakeGateway, and a client whose callbacks reach ``server``'s sub-app."""
    options = {"api_key": KEY, "clock": clock, "durations": 20.0, "video_bytes": 16 * 1024}
    async with (
        FakeGateway(**{**options, "webhook_secret": SECRET, **gateway}) as gw,
        Client(
            api_key=KEY,
            base_url=gw.url,
            clock=clock,
            webhook_url=server.url,
            webhook_secret=SECRET,
            seed=1,
        ) as client,
    ):
        await server.serve(client)
        yield gw, client


def _generate(group: TaskGroup, client: Client, output: Path, model: str = "viduq1") -> list[Path]:
    """Start ``client.generate`` in ``group``; the list gets its path when it returns."""
    paths: list[Path] = []

    async def generate() -> None:
        paths.append(await client.generate(prompt="a", model=model, output=output))

    group.start_soon(generate)
    return paths


async def test_end_to_end_signed_callbacks_through_the_aiohttp_sub_app(
    held: HeldClock, hook_server: HookServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every delivery duplicated, and a forgery sent as each task is created.
    wired = _wired(hook_server, held, webhook_duplicate_rate=1.0, webhook_forge_rate=1.0)
    async with wired as (gw, client):
        with caplog.at_level(logging.INFO, logger="asyncvideo"):
            async with anyio.create_task_group() as group:
                paths = _generate(group, client, tmp_path)
                await _until(lambda: gw.stats.webhook_forged == 1)
                await _settle()
                assert "no signature matches" in caplog.text  # the forgery: 401
                assert _statuses(gw) == 0
                held.advance(25.0)
                await _until(lambda: bool(paths))
        (task_id,) = gw.tasks
        assert paths[0].read_bytes() == gw.video_content(task_id)
        assert gw.stats.webhook_duplicated == 1
        assert gw.stats.webhook_deliveries == 1
        assert gw.stats.webhook_failures == 0  # the duplicate was answered 200 too
        assert _statuses(gw) == 1  # one confirming query for two deliveries
        assert gw.stats.downloads_completed == 1
        assert held.monotonic() == 25.0  # no safety interval was waited for


async def test_end_to_end_stale_and_replayed_posts_are_refused(
    held: HeldClock, hook_server: HookServer
) -> None:
    # The gateway's own callbacks are dropped: only the test's posts arrive.
    async with (
        _wired(hook_server, held, webhook_drop_rate=1.0) as (gw, client),
        aiohttp.ClientSession() as http,
    ):
        job = await client.submit(prompt="a", model="viduq1", idempotency_key="ref-9")
        url = f"{hook_server.url}?asyncvideo_token=ref-9"
        body = _vidu_callback(job.id, "ref-9")

        async def post(headers: dict[str, str]) -> tuple[int, Json]:
            async with http.post(url, data=body, headers=headers) as response:
                return response.status, await response.json()

        async with anyio.create_task_group() as group:
            group.start_soon(client.wait, job)
            await _settle()
            held.advance(25.0)
            now = int(held.time())
            stale = await post(_reference_headers(body, SECRET, now - 600, "d1"))
            assert stale == (401, {"ok": False, "error": "stale"})
            genuine = _reference_headers(body, SECRET, now, "d2")
            assert await post(genuine) == (200, {"ok": True, "woken": True, "duplicate": False})
            assert await post(genuine) == (200, {"ok": True, "woken": False, "duplicate": True})
            # The same signed bytes under a new delivery id are still the same delivery.
            copy = {**genuine, DELIVERY_HEADER: "d3"}
            assert (await post(copy))[1]["duplicate"] is True
            too_big = io.BytesIO(b"x" * (5 * 1024 * 1024))
            async with http.post(url, data=too_big) as response:
                assert response.status == 413  # bounded before it is read whole
        assert _statuses(gw) == 1


async def test_end_to_end_dropped_callbacks_are_caught_by_the_safety_poll(
    held: HeldClock, hook_server: HookServer, tmp_path: Path
) -> None:
    async with _wired(hook_server, held, webhook_drop_rate=1.0) as (gw, client):
        async with anyio.create_task_group() as group:
            paths = _generate(group, client, tmp_path)
            await _settle()
            held.advance(25.0)
            await _until(lambda: gw.stats.webhook_dropped == 1)
            await _settle()
            assert paths == []  # the callback never came
            assert _statuses(gw) == 0
            held.advance(45.0)  # past the safety interval (60 s, +-10%)
            await _until(lambda: bool(paths))
        assert _statuses(gw) == 1
        assert gw.stats.downloads_completed == 1


@pytest.mark.parametrize("model", ["viduq1", "kling-v1"])
async def test_end_to_end_behind_a_relay_the_callback_is_matched_by_our_reference(
    held: HeldClock, hook_server: HookServer, tmp_path: Path, model: str
) -> None:
    # Behind new-api, Vidu and Kling call back themselves, naming their own task id.
    async with _wired(hook_server, held, profile="new-api", content_lag=0.0) as (gw, client):
        async with anyio.create_task_group() as group:
            paths = _generate(group, client, tmp_path, model)
            await _settle()
            held.advance(25.0)
            await _until(lambda: bool(paths))
        (task,) = gw.tasks.values()
        assert task.upstream_id != task.id
        assert _statuses(gw) == 1
        assert held.monotonic() == 25.0
