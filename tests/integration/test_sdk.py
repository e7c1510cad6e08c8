"""The provider's official SDK and CLI (``together`` 3.1.1), pointed at a worker unchanged.

Operators' scripts use ``client.clusters.remediations.{create, retrieve, list, approve,
reject, cancel}`` and the ``together clusters remediations …`` CLI against the provider's
API; this service must answer them the same way. One worker (real broker, real process)
serves the module; each test works in a cluster of its own. The SDK validates every
answer strictly (``_strict_response_validation=True``): a missing required field or an
enum value it does not know fails the test.

Left out: strict validation of ``GET /v1/compute/clusters`` (the SDK's ``Cluster``
requires some thirty fields about the cluster itself, which this service does not know;
the CLI reads it without strict validation, as tested here).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from together import (
    APIStatusError,
    AsyncTogether,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DefaultAsyncHttpxClient,
    NotFoundError,
)
from together.types import WhoamiProjectAPIKey
from together.types.clusters import Remediation

from tests.builders import event_payload, run_payload
from tests.integration.conftest import (
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    unique_names,
)

# Broker-sensitive: run on Tansu and on Apache Kafka (conftest.py).
pytestmark = pytest.mark.brokers("tansu", "kafka")

TOKEN = "sdk-token"


@pytest.fixture(scope="module")
def sdk_names() -> Names:
    return unique_names()


@pytest.fixture(scope="module")
def worker(
    broker: Broker, sdk_names: Names, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    process = launch_worker(
        broker,
        sdk_names,
        tmp_path_factory.mktemp("sdk"),
        REMEDIATOR_API_TOKENS=f"scripts={TOKEN}",
    )
    try:
        yield process
    finally:
        process.stop()


class Counted:
    """Requests the SDK sent, by method and path: a retry shows up as a second one."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append(f"{request.method} {request.url.path}")


@pytest.fixture
def sent() -> Counted:
    return Counted()


@pytest.fixture
async def sdk(worker: WorkerProcess, sent: Counted) -> AsyncIterator[AsyncTogether]:
    """The SDK as a script would use it (default retries), validating answers strictly."""
    http = DefaultAsyncHttpxClient(event_hooks={"request": [sent]})
    client = AsyncTogether(
        api_key=TOKEN,
        base_url=worker.base_url,
        http_client=http,
        _strict_response_validation=True,
    )
    async with client:
        yield client


@pytest.fixture
def cluster() -> str:
    return f"cl-{uuid.uuid4().hex[:8]}"


async def open_automated(
    kafka: Kafka, names: Names, sdk: AsyncTogether, cluster: str, instance: str
) -> Remediation:
    """A failing health check (DCGM_DIAG), and the PENDING_APPROVAL remediation it opens."""
    await kafka.produce(names.active, run_payload(cluster_id=cluster, instance_id=instance))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        listed = await sdk.clusters.remediations.list(instance, cluster_id=cluster)
        if listed.remediations:
            return listed.remediations[0]
        assert loop.time() < deadline, "the health signal opened no remediation"
        await asyncio.sleep(0.2)


# --- create, retrieve -------------------------------------------------------------------


async def test_create_opens_a_manual_pending_remediation_that_retrieve_returns(
    sdk: AsyncTogether, cluster: str
) -> None:
    created = await sdk.clusters.remediations.create(
        "i1", cluster_id=cluster, mode="REMEDIATION_MODE_REBOOT_VM", reason="NVLink errors"
    )
    assert (created.cluster_id, created.instance_id) == (cluster, "i1")
    assert (created.state, created.trigger, created.mode) == (
        "PENDING",
        "REMEDIATION_TRIGGER_MANUAL",
        "REMEDIATION_MODE_REBOOT_VM",
    )
    assert (created.reason, created.requested_by) == ("NVLink errors", "scripts")
    assert created.create_time is not None
    assert created.create_time == created.update_time

    got = await sdk.clusters.remediations.retrieve(created.id, cluster_id=cluster, instance_id="i1")
    assert got == created


async def test_create_with_a_remediation_id_is_idempotent(
    sdk: AsyncTogether, cluster: str, sent: Counted
) -> None:
    """The SDK has no parameter for the idempotency key; scripts pass it as a query."""
    rid = f"ticket-{uuid.uuid4().hex[:6]}"
    first, again = [
        await sdk.clusters.remediations.create(
            "i1",
            cluster_id=cluster,
            mode="REMEDIATION_MODE_VM_ONLY",
            extra_query={"remediation_id": rid},
        )
        for _ in range(2)
    ]
    assert first.id == rid
    assert again == first
    listed = await sdk.clusters.remediations.list("-", cluster_id=cluster)
    assert [r.id for r in listed.remediations] == [rid]

    sent.requests.clear()
    with pytest.raises(ConflictError) as conflict:
        await sdk.clusters.remediations.create(
            "i1",
            cluster_id=cluster,
            mode="REMEDIATION_MODE_HOST_AWARE",
            extra_query={"remediation_id": rid},
        )
    assert error_of(conflict.value.body)["status"] == "ALREADY_EXISTS"
    assert len(sent.requests) == 1, sent.requests


# --- list: filters, instance "-", paging, both orders ----------------------------------


async def some_remediations(
    kafka: Kafka, names: Names, sdk: AsyncTogether, cluster: str
) -> list[Remediation]:
    """Five remediations of every trigger and several modes and states, one per instance."""
    remediations = sdk.clusters.remediations
    automated = await open_automated(kafka, names, sdk, cluster, "auto")  # HOST_AWARE
    made = [
        await remediations.create("vm", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"),
        await remediations.create("reboot", cluster_id=cluster, mode="REMEDIATION_MODE_REBOOT_VM"),
        await remediations.create(
            "evict", cluster_id=cluster, mode="REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"
        ),
        await remediations.create("host", cluster_id=cluster, mode="REMEDIATION_MODE_HOST_AWARE"),
    ]
    # Cancel two, so that update order differs from creation order.
    made[0] = await remediations.cancel(made[0].id, cluster_id=cluster, instance_id="vm")
    made[2] = await remediations.cancel(made[2].id, cluster_id=cluster, instance_id="evict")
    return [automated, *made]


def ids(records: list[Remediation]) -> set[str]:
    return {r.id for r in records}


async def test_list_filters_by_one_or_several_values_of_each_filter(
    sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    everything = await some_remediations(kafka, sdk_names, sdk, cluster)
    remediations = sdk.clusters.remediations

    async def check(**filters: list[str]) -> set[str]:
        """The list with ``filters`` is exactly the records that match all of them."""
        answer = await remediations.list("-", cluster_id=cluster, **filters)  # type: ignore[arg-type]
        assert answer.has_next is False
        expected = {
            r.id
            for r in everything
            if all(not values or getattr(r, f) in values for f, values in filters.items())
        }
        assert ids(answer.remediations) == expected, filters
        return expected

    assert len(await check()) == 5
    assert len(await check(state=["CANCELLED"])) == 2
    assert len(await check(state=["CANCELLED", "PENDING_APPROVAL"])) == 3
    assert len(await check(mode=["REMEDIATION_MODE_HOST_AWARE"])) == 2
    assert len(await check(mode=["REMEDIATION_MODE_VM_ONLY", "REMEDIATION_MODE_REBOOT_VM"])) == 2
    assert len(await check(trigger=["REMEDIATION_TRIGGER_AUTOMATED"])) == 1
    assert len(await check(trigger=["REMEDIATION_TRIGGER_MANUAL"])) == 4
    assert (
        len(await check(trigger=["REMEDIATION_TRIGGER_MANUAL", "REMEDIATION_TRIGGER_AUTOMATED"]))
        == 5
    )
    # Filters combine: all must hold.
    assert (
        len(await check(state=["PENDING", "CANCELLED"], mode=["REMEDIATION_MODE_HOST_AWARE"])) == 1
    )
    # The SDK sends an empty list as "state=": no filter.
    assert len(await check(state=[], mode=[], trigger=[])) == 5

    one_instance = await remediations.list("reboot", cluster_id=cluster, state=["PENDING"])
    assert [r.instance_id for r in one_instance.remediations] == ["reboot"]


@pytest.mark.parametrize(
    ("order_by", "field", "newest_first"),
    [
        (None, "create_time", True),
        ("create_time", "create_time", True),
        ("create_time asc", "create_time", False),
        ("create_time desc", "create_time", True),
        ("update_time asc", "update_time", False),
        ("update_time desc", "update_time", True),
    ],
)
async def test_list_pages_through_the_whole_cluster_in_the_asked_order(
    sdk: AsyncTogether,
    kafka: Kafka,
    sdk_names: Names,
    cluster: str,
    order_by: str | None,
    field: str,
    newest_first: bool,
) -> None:
    everything = await some_remediations(kafka, sdk_names, sdk, cluster)
    expected = sorted(everything, key=lambda r: (getattr(r, field), r.id), reverse=newest_first)
    order = {"order_by": order_by} if order_by else {}  # None: the SDK sends no order_by

    seen: list[Remediation] = []
    params: dict[str, Any] = {"page_size": 2, **order}
    while True:
        page = await sdk.clusters.remediations.list("-", cluster_id=cluster, **params)
        seen.extend(page.remediations)
        assert page.has_next == bool(page.next_page_token)
        if not page.has_next:
            break
        params["page_token"] = page.next_page_token
    assert [r.id for r in seen] == [r.id for r in expected]


async def test_a_page_token_only_continues_its_own_order(sdk: AsyncTogether, cluster: str) -> None:
    for instance in ("i1", "i2"):
        await sdk.clusters.remediations.create(
            instance, cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
        )
    first = await sdk.clusters.remediations.list(
        "-", cluster_id=cluster, page_size=1, order_by="create_time asc"
    )
    with pytest.raises(BadRequestError) as refused:
        await sdk.clusters.remediations.list(
            "-", cluster_id=cluster, page_token=first.next_page_token, order_by="update_time asc"
        )
    assert "different list" in error_of(refused.value.body)["message"]


async def test_a_bogus_order_by_or_filter_value_is_a_bad_request_naming_the_allowed_values(
    sdk: AsyncTogether, cluster: str
) -> None:
    with pytest.raises(BadRequestError) as bad_order:
        await sdk.clusters.remediations.list("-", cluster_id=cluster, order_by="priority")
    assert "create_time asc" in error_of(bad_order.value.body)["message"]
    with pytest.raises(BadRequestError) as bad_state:
        await sdk.clusters.remediations.list(
            "-",
            cluster_id=cluster,
            state=["PENDING", "SLEEPING"],  # type: ignore[list-item]  # as a typo would
        )
    assert "PENDING_APPROVAL, PENDING, QUARANTINING" in error_of(bad_state.value.body)["message"]


# --- approve, reject, cancel ------------------------------------------------------------


async def test_approve_with_a_mode_and_a_comment(
    sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, sdk_names, sdk, cluster, "i1")
    assert (opened.state, opened.trigger) == ("PENDING_APPROVAL", "REMEDIATION_TRIGGER_AUTOMATED")
    approved = await sdk.clusters.remediations.approve(
        opened.id,
        cluster_id=cluster,
        instance_id="i1",
        mode="REMEDIATION_MODE_REBOOT_VM",
        comment="a reboot first",
    )
    assert (approved.state, approved.mode) == ("PENDING", "REMEDIATION_MODE_REBOOT_VM")
    assert (approved.reviewed_by, approved.review_comment) == ("scripts", "a reboot first")
    assert approved.review_time is not None


async def test_a_host_power_cycle_is_created_directly_never_as_an_approval_override(
    sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    created = await sdk.clusters.remediations.create(
        "i2", cluster_id=cluster, mode="REMEDIATION_MODE_HOST_POWER_CYCLE"
    )
    assert (created.state, created.mode) == ("PENDING", "REMEDIATION_MODE_HOST_POWER_CYCLE")
    listed = await sdk.clusters.remediations.list(
        "-", cluster_id=cluster, mode=["REMEDIATION_MODE_HOST_POWER_CYCLE"]
    )
    assert [r.id for r in listed.remediations] == [created.id]
    none = await sdk.clusters.remediations.list(
        "-", cluster_id=cluster, state=["QUARANTINING", "QUARANTINED"]
    )
    assert none.remediations == []  # execution is off in this module's worker
    opened = await open_automated(kafka, sdk_names, sdk, cluster, "i1")
    with pytest.raises(BadRequestError, match="cannot be set as an approval override"):
        await sdk.clusters.remediations.approve(
            opened.id,
            cluster_id=cluster,
            instance_id="i1",
            mode="REMEDIATION_MODE_HOST_POWER_CYCLE",
        )


async def test_a_remediation_shows_its_linked_alerts_with_parsed_xids(
    sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    alert = event_payload(
        cluster_id=cluster,
        instance_id="i1",
        alert_name="DmesgXidError",
        annotations={"xid": "79", "gpu": "3"},
    )
    await kafka.produce(sdk_names.passive, alert)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (
        listed := await sdk.clusters.remediations.list("i1", cluster_id=cluster)
    ).remediations:
        assert loop.time() < deadline, "the alert opened no remediation"
        await asyncio.sleep(0.2)
    (opened,) = listed.remediations
    got = await sdk.clusters.remediations.retrieve(opened.id, cluster_id=cluster, instance_id="i1")
    (linked,) = got.linked_alerts or []
    assert linked.passive_health_check_alert_id == alert["event_id"]
    assert (linked.alert_name, linked.severity) == ("DmesgXidError", "PHC_SEVERITY_CRITICAL")
    assert linked.annotation.xid is not None
    assert [(e.xid_code, e.mnemonic) for e in linked.annotation.xid.events] == [
        ("79", "GPU has fallen off the bus")
    ]
    assert linked.resolved_at is None


async def test_reject_with_a_comment(
    sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    opened = await open_automated(kafka, sdk_names, sdk, cluster, "i1")
    rejected = await sdk.clusters.remediations.reject(
        opened.id, cluster_id=cluster, instance_id="i1", comment="known flaky test"
    )
    assert (rejected.state, rejected.reviewed_by, rejected.review_comment) == (
        "CANCELLED",
        "scripts",
        "known flaky test",
    )


async def test_cancel_and_a_second_cancel_is_a_conflict_asked_once(
    sdk: AsyncTogether, cluster: str, sent: Counted
) -> None:
    created = await sdk.clusters.remediations.create(
        "i1", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
    )
    cancelled = await sdk.clusters.remediations.cancel(
        created.id, cluster_id=cluster, instance_id="i1"
    )
    assert cancelled.state == "CANCELLED"

    sent.requests.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConflictError) as conflict:
        await sdk.clusters.remediations.cancel(created.id, cluster_id=cluster, instance_id="i1")
    # Without x-should-retry: false the SDK asks three times, about 2.5 s apart in all.
    assert sent.requests == [
        f"POST /v1/compute/clusters/{cluster}/instances/i1/remediations/{created.id}/cancel"
    ]
    assert loop.time() - started < 2.0
    assert conflict.value.response.headers["x-should-retry"] == "false"
    error = error_of(conflict.value.body)
    assert (error["code"], error["status"], error["type"]) == (
        409,
        "FAILED_PRECONDITION",
        "invalid_request_error",
    )


# --- errors as the SDK's exceptions -----------------------------------------------------


def error_of(body: object) -> dict[str, Any]:
    """The contract's error object of an SDK exception's body."""
    assert isinstance(body, dict)
    error = body["error"]
    assert isinstance(error, dict)
    return error


async def test_each_error_is_the_sdks_exception_and_is_asked_once(
    sdk: AsyncTogether, worker: WorkerProcess, cluster: str, sent: Counted
) -> None:
    created = await sdk.clusters.remediations.create(
        "i1", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
    )
    remediations = sdk.clusters.remediations
    async with AsyncTogether(
        api_key="not-a-token",
        base_url=worker.base_url,
        http_client=DefaultAsyncHttpxClient(event_hooks={"request": [sent]}),
        _strict_response_validation=True,
    ) as stranger:
        cases: list[tuple[type[APIStatusError], Callable[[], Any], int, str, str]] = [
            (
                NotFoundError,
                lambda: remediations.retrieve("no-such-id", cluster_id=cluster, instance_id="i1"),
                404,
                "NOT_FOUND",
                "invalid_request_error",
            ),
            (
                NotFoundError,
                lambda: remediations.cancel(created.id, cluster_id=cluster, instance_id="i2"),
                404,
                "NOT_FOUND",
                "invalid_request_error",
            ),
            (
                ConflictError,
                lambda: remediations.approve(created.id, cluster_id=cluster, instance_id="i1"),
                409,
                "FAILED_PRECONDITION",
                "invalid_request_error",
            ),
            (
                ConflictError,
                lambda: remediations.create(
                    "i1", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
                ),
                409,
                "FAILED_PRECONDITION",
                "invalid_request_error",
            ),
            (
                AuthenticationError,
                lambda: stranger.clusters.remediations.list("-", cluster_id=cluster),
                401,
                "UNAUTHENTICATED",
                "authentication_error",
            ),
            (
                AuthenticationError,
                lambda: stranger.whoami(),
                401,
                "UNAUTHENTICATED",
                "authentication_error",
            ),
            (
                BadRequestError,
                lambda: remediations.list("-", cluster_id=cluster, page_token="garbage!"),
                400,
                "INVALID_ARGUMENT",
                "invalid_request_error",
            ),
            (
                BadRequestError,
                lambda: remediations.retrieve("bad/id", cluster_id=cluster, instance_id="i1"),
                400,
                "INVALID_ARGUMENT",
                "invalid_request_error",
            ),
        ]
        for exception, call, code, status, kind in cases:
            sent.requests.clear()
            with pytest.raises(exception) as raised:
                await call()
            assert len(sent.requests) == 1, sent.requests
            assert raised.value.response.headers["x-should-retry"] == "false"
            error = error_of(raised.value.body)
            assert (error["code"], error["status"], error["type"]) == (code, status, kind)
            assert error["message"]


# --- what the SDK's CLI needs: whoami, clusters -----------------------------------------


async def test_whoami_answers_the_principal_in_the_sdks_project_api_key_shape(
    sdk: AsyncTogether, sdk_names: Names
) -> None:
    me = await sdk.whoami()
    assert isinstance(me, WhoamiProjectAPIKey)
    assert me.type == "project_api_key"
    assert me.api_key.id == "scripts"
    assert me.project.id == sdk_names.app_id
    assert me.organization.id == sdk_names.app_id


async def test_clusters_lists_every_cluster_the_service_knows(
    worker: WorkerProcess, sdk: AsyncTogether, kafka: Kafka, sdk_names: Names, cluster: str
) -> None:
    other = f"{cluster}-b"
    await sdk.clusters.remediations.create(
        "i1", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
    )
    await open_automated(kafka, sdk_names, sdk, other, "i9")  # known from a health signal

    # The CLI reads it without strict validation (its Cluster type wants much more).
    async with AsyncTogether(api_key=TOKEN, base_url=worker.base_url) as lenient:
        known = [c.cluster_id for c in (await lenient.clusters.list()).clusters]
    assert {cluster, other} <= set(known)
    assert known == sorted(set(known))

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.base_url, headers=headers) as plain:
        raw = await plain.get("/v1/compute/clusters")
    assert raw.status_code == 200
    # The SDK's CLI reads cluster_id only; the rest is the operators' console's summary.
    assert all({"cluster_id", "open_remediations"} <= set(c) for c in raw.json()["clusters"])


# --- the SDK's CLI ----------------------------------------------------------------------


@pytest.fixture
def cli(worker: WorkerProcess, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(*args)``: the SDK's console script against the worker, as an operator runs it
    (no project set: it asks whoami first), in a clean environment."""
    script = Path(sys.executable).parent / "together"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),  # no stored login of the machine's user
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TOGETHER_BASE_URL": worker.base_url,
        "TOGETHER_API_KEY": TOKEN,
        "TOGETHER_TELEMETRY_DISABLED": "1",  # no internet here, and none of its business
        "TOGETHER_DISABLE_VERSION_CHECK": "1",
        "COLUMNS": "250",  # rich wraps tables and messages to the terminal's width
        "PYTHONIOENCODING": "utf-8",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_the_cli_runs_every_remediations_subcommand(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    sdk: AsyncTogether,
    kafka: Kafka,
    sdk_names: Names,
    cluster: str,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("clusters", "remediations", *args)

    created = ok(await asyncio.to_thread(run, "create", cluster, "i1", "--mode", "VM_ONLY"))
    assert "Remediation created" in created
    (manual,) = (await sdk.clusters.remediations.list("i1", cluster_id=cluster)).remediations
    assert manual.id in created
    assert (manual.mode, manual.state) == ("REMEDIATION_MODE_VM_ONLY", "PENDING")

    # retrieve, approve, reject and cancel find the remediation's cluster and instance
    # themselves: GET /v1/compute/clusters, then each cluster's list.
    retrieved = ok(await asyncio.to_thread(run, "retrieve", manual.id))
    assert manual.id in retrieved
    assert "PENDING" in retrieved

    to_approve = await open_automated(kafka, sdk_names, sdk, cluster, "i2")
    to_reject = await open_automated(kafka, sdk_names, sdk, cluster, "i3")
    approved = await asyncio.to_thread(
        run, "approve", to_approve.id, "--comment", "go", "--mode", "REBOOT_VM"
    )
    assert f"Remediation approved. ({to_approve.id})" in ok(approved)
    rejected = await asyncio.to_thread(run, "reject", to_reject.id, "--comment", "flaky")
    assert f"Remediation rejected. ({to_reject.id})" in ok(rejected)
    cancelled = await asyncio.to_thread(run, "cancel", manual.id)
    assert f"Remediation cancelled. ({manual.id})" in ok(cancelled)

    listed = ok(
        await asyncio.to_thread(
            run,
            "list",
            cluster,
            "--state",
            "PENDING",
            "--state",
            "CANCELLED",
            "--trigger",
            "AUTOMATED",
        )
    )
    assert to_approve.id in listed
    assert to_reject.id in listed
    assert manual.id not in listed  # MANUAL

    got = {
        r.id: r
        for r in (await sdk.clusters.remediations.list("-", cluster_id=cluster)).remediations
    }
    assert (got[to_approve.id].state, got[to_approve.id].mode) == (
        "PENDING",
        "REMEDIATION_MODE_REBOOT_VM",
    )
    assert (got[to_approve.id].review_comment, got[to_reject.id].review_comment) == ("go", "flaky")
    assert got[to_reject.id].state == "CANCELLED"
    assert got[manual.id].state == "CANCELLED"


async def test_the_cli_prints_the_services_error_message(
    cli: Callable[..., subprocess.CompletedProcess[str]], sdk: AsyncTogether, cluster: str
) -> None:
    created = await sdk.clusters.remediations.create(
        "i1", cluster_id=cluster, mode="REMEDIATION_MODE_VM_ONLY"
    )
    refused = await asyncio.to_thread(cli, "clusters", "remediations", "approve", created.id)
    assert refused.returncode == 1
    assert "Failed" not in refused.stdout
    assert f"cannot approve remediation {created.id}: it is PENDING" in refused.stdout

    missing = await asyncio.to_thread(cli, "clusters", "remediations", "retrieve", "no-such-id")
    assert missing.returncode == 1
    assert "Remediation not found: no-such-id" in missing.stdout
