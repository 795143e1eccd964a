"""``client.with_options(...)``: other options, the same connection pool, clear closing.

Against the FakeGateway over HTTP: the gateway counts the connections it sees
(``stats.connections``), so sharing a pool is what the server observes.
"""

from __future__ import annotations

import anyio
import attrs
import pytest

from asyncvideo import (
    Client,
    JobState,
    Limits,
    ManualClock,
    PollPolicy,
    RetryPolicy,
    Timeouts,
)
from asyncvideo.errors import ConfigurationError, JobTimeoutError, TimeoutError
from asyncvideo.testing import FakeGateway
from tests.conftest import ClientFactory

pytestmark = pytest.mark.anyio


async def test_both_clients_use_one_connection_pool(
    client: Client, make_client: ClientFactory, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    derived = client.with_options(
        timeouts=Timeouts(request=30.0), poll_policy=PollPolicy(deadline=60.0)
    )
    for _ in range(3):
        await derived.refresh(job)
        await client.refresh(job)
    assert gateway.stats.requests["status"] == 6
    assert gateway.stats.connections == 1  # one kept-alive connection served both clients
    assert derived.request_count == 3  # each client counts its own requests
    assert client.request_count == 4
    # A client of its own is a pool of its own: the gateway sees it (the count can move).
    await make_client().refresh(job)
    assert gateway.stats.connections == 2


async def test_a_shorter_deadline_applies_to_the_derived_client_only(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")  # done at 20-40 s
    impatient = client.with_options(poll_policy=PollPolicy(deadline=10.0))
    with pytest.raises(JobTimeoutError):
        await impatient.wait(job)
    done = await client.wait(job)
    assert done.state is JobState.SUCCEEDED
    assert client.poll_policy == PollPolicy()


async def test_a_shorter_network_timeout_applies_to_the_derived_client_only(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    gateway.set_config(latency=0.2)  # real seconds: network timeouts are real time
    hasty = client.with_options(
        timeouts=Timeouts(request=0.02), retry_policy=RetryPolicy(max_attempts=1)
    )
    async with anyio.create_task_group() as group:
        answers: list[JobState] = []

        async def parent_refresh() -> None:
            answers.append((await client.refresh(job)).state)

        group.start_soon(parent_refresh)  # the parent's 120 s timeout lets it finish
        with pytest.raises(TimeoutError):
            await hasty.refresh(job)
        assert answers == []  # the derived client gave up while the parent still waited
    assert answers == [JobState.QUEUED]
    assert gateway.stats.connections == 2  # both in flight at once: two pooled connections


async def test_a_429_seen_by_one_client_slows_the_other(
    client: Client, gateway: FakeGateway, clock: ManualClock
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    derived = client.with_options(poll_policy=PollPolicy(deadline=60.0))
    gateway.script_failures("status", [429])  # Retry-After: 1
    await derived.refresh(job)  # retried after the Retry-After
    assert gateway.stats.rate_limited == 1
    before = clock.monotonic()
    await client.refresh(job)  # the provider's rate was cut for both: it waits its turn
    assert clock.monotonic() > before


async def test_closing_the_derived_client_leaves_the_pool_open(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    async with client.with_options(timeouts=Timeouts(request=30.0)) as derived:
        await derived.refresh(job)
    with pytest.raises(ConfigurationError) as closed:
        await derived.refresh(job)
    assert str(closed.value) == "this client is closed; create a new Client"
    assert (await client.refresh(job)).id == job.id
    assert gateway.stats.connections == 1  # the parent goes on over the same connection


async def test_closing_the_parent_closes_the_pool_for_derived_clients(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    parent = make_client()
    derived = parent.with_options(poll_policy=PollPolicy(deadline=60.0))
    job = await derived.submit(prompt="a cat", model="kling-v1")
    await parent.aclose()
    with pytest.raises(ConfigurationError) as raised:
        await derived.refresh(job)
    assert str(raised.value) == (
        "the client this one was derived from (with_options) is closed, "
        "and with it the connection pool they shared"
    )
    with pytest.raises(ConfigurationError, match="derived from"):
        derived.with_options()
    with pytest.raises(ConfigurationError, match="derived from"):
        await derived.wait(job)
    await derived.aclose()  # still fine to close
    assert gateway.stats.requests["status"] == 0  # nothing was sent after the close


async def test_limits_shared_by_the_pool_cannot_change(client: Client) -> None:
    with pytest.raises(ConfigurationError, match="max_connections") as raised:
        client.with_options(limits=Limits(max_connections=5))
    assert raised.value.field == "max_connections"
    with pytest.raises(ConfigurationError, match="requests_per_second"):
        client.with_options(limits=Limits(requests_per_second=3.0))
    derived = client.with_options(limits=attrs.evolve(client.limits, max_polls=2))
    assert derived.limits.max_polls == 2
    assert client.limits.max_polls == Limits().max_polls


async def test_the_key_is_in_no_repr(client: Client, gateway: FakeGateway) -> None:
    derived = client.with_options(timeouts=Timeouts(request=5.0))
    for text in (repr(derived), str(derived), repr(vars(derived))):
        assert gateway.api_key not in text
