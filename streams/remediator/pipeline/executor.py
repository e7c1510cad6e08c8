"""The executor: carries RUNNING remediations out through the compute control plane.

One asyncio task per RUNNING remediation whose instance this worker owns. It never writes
state itself: it reads the instance's record as last made durable by the state owner
(:meth:`Executor.observe`) and sends :class:`~remediator.domain.execution.StepReport`
messages on the inbox, which the instance's single writer applies
(:func:`remediator.domain.execution.apply_report`) in order with everything else. The
stream is never blocked by a step: the owner only hands work over, the waiting happens
here.

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
in the recovered tables (:meth:`Executor.resume`, called when the state owner has loaded
them) and continues each from its first step not done, polling the same operations.
Tasks are cancelled when a rebalance starts; a step in flight keeps running on the
control plane and is picked up by whoever owns the instance next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import overload

from mode import Service

from remediator import failpoints
from remediator.domain.execution import ReportKind, StepReport, running_remediation
from remediator.domain.models import Operation, OperationState, Remediation, StepState, dump_json
from remediator.domain.state import InstanceState
from remediator.logs import about
from remediator.pipeline.controlplane import (
    Backoff,
    ControlPlaneClient,
    ControlPlaneRejected,
    OperationStatus,
)
from remediator.pipeline.messages import InboxMessage, cluster_partition
from remediator.pipeline.outbox import Record

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence[Record]], Awaitable[object]]

#: How long to wait for a report to be recorded before sending it again.
RESEND_AFTER = 30.0


class Executor(Service):
    def __init__(
        self,
        *,
        inbox: str,
        partitions: int,
        deliver: Callable[[], Deliver],
        client: ControlPlaneClient,
        poll: Backoff,
        step_timeout: timedelta,
        clock: Callable[[], datetime],
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._inbox = inbox
        self._partitions = partitions
        self._deliver = deliver
        self.client = client
        self._poll = poll
        self._step_timeout = step_timeout
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._running_tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[bytes, asyncio.Event] = {}
        #: The instances' records as last made durable (what the steps are read from).
        self._states: dict[bytes, InstanceState] = {}
        self._active = False

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
        self._states.clear()

    async def stop_for_revocation(self, timeout: float = 10.0) -> None:
        """Partitions are being revoked: stop every task and wait until they have stopped,
        so that no step is posted for an instance this worker no longer owns (the next
        owner looks each step up before posting it, and resumes it)."""
        self.suspend()
        tasks = [t for t in self._running_tasks.values() if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:  # pragma: no cover - a task stuck past its cancellation
                log.warning("executor: %d task(s) still stopping at revocation", len(pending))

    def resume(self, running: Sequence[tuple[bytes, InstanceState]]) -> None:
        """The owned partitions are loaded: carry on with their RUNNING remediations."""
        self._active = True
        for task_id, task in list(self._running_tasks.items()):
            if task.done():
                self._running_tasks.pop(task_id, None)
        for key, state in running:
            self.observe(key, state)
        if running:
            log.info("executor: resuming %d running remediation(s)", len(running))

    def observe(self, key: bytes, state: InstanceState) -> None:
        """The owner made ``state`` durable: wake waiters, start a task if it is RUNNING."""
        remediation = running_remediation(state)
        if remediation is None:
            self._states.pop(key, None)  # only RUNNING ones are ever read back
        else:
            self._states[key] = state
        event = self._changed.get(key)
        if event is not None:
            event.set()
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
                    extra=about(remediation_id=remediation_id),
                )
                failures += 1
                await asyncio.sleep(delay)

    def _current(self, key: bytes, remediation_id: str) -> Remediation | None:
        remediation = running_remediation(self._states.get(key))
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
            status = _ours(remediation, await self.client.get(op.operation_id))
            if status is None:
                log.info(
                    "executor: %s %s on %s/%s (operation %s)",
                    remediation.id,
                    op.action.value,
                    cluster,
                    instance,
                    op.operation_id,
                    extra=about(cluster, instance, remediation.id),
                )
                status = _ours(remediation, await self.client.start(cluster, instance, op))
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
                status = _ours(
                    remediation, polled or await self.client.start(cluster, instance, op)
                )
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
        record = Record(
            self._inbox,
            key,
            dump_json(InboxMessage(report=report)),
            cluster_partition(remediation.cluster_id, self._partitions),
        )
        event = self._changed.setdefault(key, asyncio.Event())
        while True:
            await self._deliver()([record])
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
                extra=about(remediation.cluster_id, remediation.instance_id, remediation.id),
            )


@overload
def _ours(remediation: Remediation, status: OperationStatus) -> OperationStatus: ...
@overload
def _ours(remediation: Remediation, status: None) -> None: ...
def _ours(remediation: Remediation, status: OperationStatus | None) -> OperationStatus | None:
    """``status``, unless the control plane says the operation acts on another instance
    than the remediation's: then :class:`ControlPlaneRejected` (the step fails). An id
    that collides with another instance's operation must never be taken for ours, let
    alone waited on or reported DONE. A control plane that does not say is trusted."""
    if status is None:
        return None
    theirs = (status.cluster_id, status.instance_id)
    ours = (remediation.cluster_id, remediation.instance_id)
    if any(t is not None and t != o for t, o in zip(theirs, ours, strict=True)):
        raise ControlPlaneRejected(
            f"operation {status.operation_id} on the control plane acts on cluster "
            f"{status.cluster_id} instance {status.instance_id}, not on this remediation's "
            f"{remediation.cluster_id}/{remediation.instance_id}: refused"
        )
    return status


def _next_step(operations: list[Operation]) -> tuple[int, Operation] | None:
    for index, op in enumerate(operations):
        if op.state is StepState.FAILED:
            return None
        if op.state is not StepState.DONE:
            return index, op
    return None


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"
