"""Notifications: the policy's ``[[notify]]`` targets told of transitions and policy events.

- :mod:`.formats`: the notice a record makes, its CloudEvents and Slack bodies, the
  signature;
- :mod:`.delivery`: one notification POSTed, retried with backoff, or given up;
- :mod:`.progress`: the commit rule (never past a record not done);
- :mod:`.service`: the :class:`~.service.Notifier`, a service of the worker with its own
  consumer group, started only when the policy has targets (:func:`notifier_for`).

The targets themselves are described in :mod:`remediator.domain.notify_policy`;
operators' guide: docs/notifications.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from remediator.domain.notify_policy import read_secrets
from remediator.domain.policy import Policy
from remediator.notify.service import Notifier, NotifierConfig, NotifyCounts, Target
from remediator.settings import Settings

__all__ = ["Notifier", "NotifierConfig", "NotifyCounts", "Target", "notifier_for"]


def notifier_for(
    settings: Settings,
    policy: Policy,
    *,
    counts: NotifyCounts | None,
    clock: Callable[[], datetime],
    on_crash: Callable[[BaseException], Awaitable[None]] | None = None,
) -> Notifier | None:
    """The worker's notifier, its secrets read now; None when the policy has no targets."""
    if not policy.notify:
        return None
    secrets = read_secrets(policy.notify, settings.policy_file)
    config = NotifierConfig(
        connection=settings.connection,
        group_id=f"{settings.app_id}-notify",
        transitions_topic=settings.topic_transitions,
        policy_events_topic=settings.topic_policy_events,
        dead_letter_topic=settings.topic_dead_letter,
        source=f"remediator/{settings.app_id}",
        public_url=settings.dashboard_base_url,
        session_timeout=settings.session_timeout,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    targets = [Target(spec, secrets.get(spec.name)) for spec in policy.notify]
    return Notifier(config, targets, counts=counts, clock=clock, on_crash=on_crash)
