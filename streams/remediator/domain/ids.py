"""Deterministic identifiers: a replay regenerates exactly the ids it made the first time.

A remediation opened by a health signal takes its id from that signal, and a transition
takes its id from its remediation and sequence, so re-processing an input after a crash
re-publishes the same ``transition_id`` instead of inventing a new remediation.
"""

from __future__ import annotations

import hashlib
import uuid

#: Fixed namespace for uuid5 ids. Changing it would change every id: never do.
NAMESPACE = uuid.UUID("6f0c7c0e-5a43-4c8e-9a55-2d1b6a7e0d19")
_NAMESPACE_BYTES = NAMESPACE.bytes


def instance_key(cluster_id: str, instance_id: str) -> str:
    """The key of everything about one instance: ``"{cluster_id}/{instance_id}"``."""
    return f"{cluster_id}/{instance_id}"


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, without the ``UUID`` object: a third of the
    cost, on the path of every failing signal (a unit test holds the two equal)."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])  # noqa: S324 - uuid5 is SHA-1 by definition
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def automated_remediation_id(cluster_id: str, instance_id: str, signal_key: str) -> str:
    """Id of the remediation that the signal ``signal_key`` opened on the instance."""
    return uuid5(f"automated/{cluster_id}/{instance_id}/{signal_key}")


def has_automated_form(remediation_id: str) -> bool:
    """Whether ``remediation_id`` has the form of an automated remediation's id (a UUID,
    version 5). Such ids are never accepted from a client: automated remediations do not
    go through the claims table, so reusing one's id would give two remediations one id
    (and one set of transition ids)."""
    try:
        return uuid.UUID(remediation_id).version == 5
    except ValueError:
        return False


def transition_id(remediation_id: str, sequence: int) -> str:
    """Id of the ``sequence``-th change of a remediation."""
    return f"{remediation_id}:{sequence}"


def operation_id(
    cluster_id: str, instance_id: str, remediation_id: str, step: int, action: str
) -> str:
    """The control plane's idempotency key for step ``step`` (1-based) of a remediation.

    The same remediation always plans the same ids, so a step re-posted after a crash is
    recognised by the control plane and not performed twice. The id is bound to the
    cluster and instance: a remediation id is unique per instance only (a manual one is
    the client's choice), and two remediations of different instances that share one
    must never share an operation, or the second would be "found" already done on the
    control plane, or wait on the first's. A uuid5: fixed length and characters any
    control plane accepts, whatever the ids hold. (cluster and instance ids hold no
    ``/``, so the name splits back into exactly its parts.)

    Upgrade from 0.4, whose ids were ``{remediation_id}.step-{n}.{action}``: the ids are
    planned once, when a remediation starts, and stored in its record (``operations``);
    the executor, resuming after a restart or an upgrade, only ever uses the stored ones
    and never recomputes them. So a remediation RUNNING across the upgrade carries on
    with its 0.4 ids (nothing re-posted under a new id, nothing performed twice), and only
    remediations started by this version get the new form.
    """
    return uuid5(f"operation/{cluster_id}/{instance_id}/{remediation_id}/{step}/{action}")


def policy_event_id(cluster_id: str, instance_id: str, kind: str, signal_key: str) -> str:
    """Id of the policy event of ``kind`` that the signal ``signal_key`` caused."""
    return uuid5(f"policy/{kind}/{cluster_id}/{instance_id}/{signal_key}")
