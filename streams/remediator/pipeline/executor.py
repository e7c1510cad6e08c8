"""The executor: carries RUNNING remediations out through the compute control plane.

One asyncio task per RUNNING remediation whose instance this worker owns. It never writes
state itself: it reads the instance's record from the table and sends
:class:`~remediator.domain.execution.StepReport` messages on the inbox, which the
instance's single writer applies (:func:`remediator.domain.execution.apply_report`) in
order with everything else. The stream is never blocked by a step: the agent only hands
work over (:meth:`Executor.observe`), the waiting happens here.

For each step, in order:

1. a PLANNED step is first reported STARTED, and the task waits until that is *recorded*
   in the table; only then does it call the control plane. So a step that may have been
   called is always recorded as started;
2. a started step is looked up first (``GET``), and posted only if the control plane does
   not know it; the ``operation_id`` is the idempotency key, so even a repeated post
   repeats nothing;
3. the operation is polled with backoff (and jitter) until DONE or FAILED, and that is
   reported and recorded before the next step.

After a crash or a rebalance the new owner finds the RUNNING remediations of its partitions
in the table (:meth:`Executor.resume`, called when the rebalance and table recovery have
ended) and continues each from its first step not done, polling the same operations.
Tasks are cancelled when a rebalance starts; a step in flight keeps running on the
control plane and is picked up by whoever owns the instance next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import faust
from mode import Service

from remediator import failpoints
from remediator.domain import correlate, ids, slots
from remediator.domain.correlate import InstanceState
from remediator.domain.execution import ReportKind, StepReport, running_remediation
from remediator.domain.models import Operation, Remediation, StepState, dump_json
from remediator.domain.slots import ClusterSlots
from remediator.pipeline.controlplane import (
    Backoff,
    ControlPlaneClient,
    ControlPlaneRejected,
    OperationState,
    OperationStatus,
)
from remediator.pipeline.messages import InboxMessage, Route
from remediator.pipeline.publish import publish

log = logging.getLogger(__name__)

CLUSTER_PREFIX = ids.cluster_key("").encode()

#: How long to wait for a report to be recorded before sending it again.
RESEND_AFTER = 30.0


class Executor(Service):
    def __init__(
        self,
        *,
        table: faust.types.TableT[bytes, bytes],
        inbox: faust.TopicT,
        client: ControlPlaneClient,
        partition_of: Callable[[bytes], int],
        poll: Backoff,
        step_timeout: timedelta,
        clock: Callable[[], datetime],
        max_running_per_cluster: int,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._table = table
        self._inbox = inbox
        self.client = client
        self._partition_of = partition_of
        self._poll = poll
        self._step_timeout = step_timeout
        self._clock = clock
        self._limit = max_running_per_cluster
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._running_tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[bytes, asyncio.Event] = {}
        self._active = False
        self._kicks: set[asyncio.Future[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def on_stop(self) -> None:
        await self._cancel_all()
        await self.client.aclose()

    @property
    def running(self) -> list[str]:
        """Remediations being carried out by this worker now."""
        return sorted(self._running_tasks)

    def suspend(self) -> None:
        """A rebalance started: stop every task (the next owner resumes them)."""
        self._active = False
        for task in self._running_tasks.values():
            task.cancel()

    def resume(self, partitions: Iterable[int]) -> None:
        """The rebalance ended: carry on with the RUNNING remediations of ``partitions``."""
        owned = set(partitions)
        self._active = True
        for task_id, task in list(self._running_tasks.items()):
            if task.done():
                self._running_tasks.pop(task_id, None)
        found = 0
        kicks: list[tuple[bytes, bytes]] = []
        for key, raw in list(self._table.items()):
            if self._partition_of(key) not in owned:
                continue  # a standby copy of another worker's partition
            if key.startswith(CLUSTER_PREFIX):
                cluster = ClusterSlots.model_validate_json(raw)
                if slots.waiting_with_room(cluster, self._limit):
                    kicks.append((key, self._admit(cluster.cluster_id)))
                continue
            if b"/" not in key:
                continue  # a claim
            state = InstanceState.model_validate_json(raw)
            if state.proposal is not None:
                # Its answer may have been lost with the previous owner: ask again.
                request = correlate.propose(state.proposal)
                message = InboxMessage(admission=request, route=Route.SAFETY)
                kicks.append((ids.safety_key(request.cluster_id).encode(), dump_json(message)))
            remediation = running_remediation(state)
            if remediation is not None:
                found += 1
                self._spawn(key, remediation.id)
        if found:
            log.info("executor: resuming %d running remediation(s)", found)
        if kicks:
            log.info("executor: %d queue(s) and proposal(s) to revisit", len(kicks))
            task = asyncio.ensure_future(publish(self._inbox, kicks))
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    def _admit(self, cluster_id: str) -> bytes:
        request = slots.SlotRequest(
            kind=slots.SlotRequestKind.ADMIT,
            cluster_id=cluster_id,
            instance_id="-",
            remediation_id="-",
            occurred_at=self._clock(),
        )
        return dump_json(InboxMessage(slot=request, route=Route.CLUSTER))

    def observe(self, key: bytes, state: InstanceState) -> None:
        """The instance agent wrote ``state``: wake waiters, start a task if it is RUNNING."""
        event = self._changed.get(key)
        if event is not None:
            event.set()
        remediation = running_remediation(state)
        if remediation is not None and self._active:
            self._spawn(key, remediation.id)

    # -- tasks -----------------------------------------------------------------------

    def _spawn(self, key: bytes, remediation_id: str) -> None:
        task = self._running_tasks.get(remediation_id)
        if task is not None and not task.done():
            return
        task = asyncio.ensure_future(self._carry_out(key, remediation_id))
        self._running_tasks[remediation_id] = task
        task.add_done_callback(lambda t: self._forget(key, remediation_id, t))

    def _forget(self, key: bytes, remediation_id: str, task: asyncio.Task[None]) -> None:
        if self._running_tasks.get(remediation_id) is task:
            del self._running_tasks[remediation_id]
            self._changed.pop(key, None)

    async def _cancel_all(self) -> None:
        tasks = list(self._running_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _carry_out(self, key: bytes, remediation_id: str) -> None:
        failures = 0
        while True:
            try:
                await self._execute(key, remediation_id)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not silently drop a remediation: log, retry
                delay = Backoff(base=1.0, cap=60.0).delay(failures, self._rng)
                log.exception(
                    "executor: remediation %s hit an error; retrying in %.1fs",
                    remediation_id,
                    delay,
                )
                failures += 1
                await asyncio.sleep(delay)

    def _current(self, key: bytes, remediation_id: str) -> Remediation | None:
        raw = self._table.get(key)
        if raw is None:
            return None
        remediation = running_remediation(InstanceState.model_validate_json(raw))
        if remediation is None or remediation.id != remediation_id:
            return None
        return remediation

    async def _execute(self, key: bytes, remediation_id: str) -> None:
        while True:
            remediation = self._current(key, remediation_id)
            if remediation is None:
                return  # finished, or no longer ours
            step = _next_step(remediation.operations)
            if step is None:
                return  # all done or one failed: the writer closes it
            index, op = step
            if op.state is StepState.PLANNED:
                await self._report(key, remediation, index, ReportKind.STARTED)
                continue
            status = await self._run_step(remediation, op)
            if status.state is OperationState.DONE:
                await self._report(key, remediation, index, ReportKind.DONE)
            else:
                error = status.error or "the control plane reported the step FAILED"
                await self._report(key, remediation, index, ReportKind.FAILED, error)

    async def _run_step(self, remediation: Remediation, op: Operation) -> OperationStatus:
        """Drive one started step to DONE or FAILED on the control plane."""
        cluster, instance = remediation.cluster_id, remediation.instance_id
        try:
            status = await self.client.get(op.operation_id)
            if status is None:
                log.info(
                    "executor: %s %s on %s/%s (operation %s)",
                    remediation.id,
                    op.action.value,
                    cluster,
                    instance,
                    op.operation_id,
                )
                status = await self.client.start(cluster, instance, op)
                await failpoints.hit("executor.after_post")
            delay = self._poll.base
            started = op.start_time or self._clock()
            while status.state is OperationState.RUNNING:
                if self._clock() - started > self._step_timeout:
                    return OperationStatus(
                        operation_id=op.operation_id,
                        action=op.action.value,
                        state=OperationState.FAILED,
                        error=f"did not finish within {_seconds(self._step_timeout)}",
                    )
                await asyncio.sleep(self._rng.uniform(delay / 2, delay))
                delay = min(delay * self._poll.factor, self._poll.cap)
                polled = await self.client.get(op.operation_id)
                # Unknown to the control plane after all (lost?): post again, idempotently.
                status = polled or await self.client.start(cluster, instance, op)
        except ControlPlaneRejected as exc:
            return OperationStatus(
                operation_id=op.operation_id,
                action=op.action.value,
                state=OperationState.FAILED,
                error=str(exc),
            )
        return status

    async def _report(
        self,
        key: bytes,
        remediation: Remediation,
        index: int,
        kind: ReportKind,
        error: str | None = None,
    ) -> None:
        """Send a report and wait until the writer has recorded it (or moved on)."""
        op = remediation.operations[index]
        report = StepReport(
            remediation_id=remediation.id,
            cluster_id=remediation.cluster_id,
            instance_id=remediation.instance_id,
            step=index,
            operation_id=op.operation_id,
            kind=kind,
            error=error,
            observed_at=self._clock(),
        )
        message = dump_json(InboxMessage(report=report))
        event = self._changed.setdefault(key, asyncio.Event())
        while True:
            await publish(self._inbox, [(key, message)])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RESEND_AFTER
            while loop.time() < deadline:
                event.clear()
                current = self._current(key, remediation.id)
                if current is None or current.operations[index].state is not op.state:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=1.0)
            log.warning(
                "executor: %s report for %s not recorded after %.0fs; sending it again",
                kind.value,
                op.operation_id,
                RESEND_AFTER,
            )


def _next_step(operations: list[Operation]) -> tuple[int, Operation] | None:
    for index, op in enumerate(operations):
        if op.state is StepState.FAILED:
            return None
        if op.state is not StepState.DONE:
            return index, op
    return None


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"
