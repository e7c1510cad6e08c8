"""Failure domains: where an instance sits (its rack, its InfiniBand leaf switch).

A bad rack power feed or a flapping leaf switch fails every instance under it at once;
repairing them all at once takes the whole domain down. So the policy may limit open
remediations per failure domain as well as per cluster (``[blast_radius.domains]``, see
:mod:`safety`). Its ``keys`` name what a domain is, e.g. ``["rack", "ib_leaf"]``; an
instance with ``rack = "r12"`` and ``ib_leaf = "leaf-3"`` is in two domains,
``rack=r12`` and ``ib_leaf=leaf-3``, each counted and limited on its own.

Where the values come from, per key:

1. the instance's signals: a passive event's ``annotations`` (Alertmanager's labels
   arrive there too), an active run's ``labels``. The newest signal carrying the key
   wins, and it is remembered (a signal that does not carry it changes nothing; one
   older than the newest seen, arriving late, neither);
2. else the operator's mapping file (``[blast_radius.domains] file``), for fleets whose
   signals do not carry it: instance id (or ``cluster_id/instance_id``) -> values.

An instance with no value for a key is in no domain of that key: not limited by it (the
cluster's own limit still applies). The domain is part of the instance's record, so the
per-domain counts are derived from the records like the cluster's are.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .models import ActiveHealthCheckRun, HealthSignal

#: Instance id, or ``cluster_id/instance_id`` -> key -> value (the mapping file).
DomainMap = Mapping[str, Mapping[str, str]]

EMPTY: DomainMap = {}


class DomainMapError(ValueError):
    """The mapping file cannot be used; the message is one line naming the file."""


def carried(signal: HealthSignal) -> Mapping[str, str]:
    """The key/value pairs a signal carries that may name its domain."""
    if isinstance(signal, ActiveHealthCheckRun):
        return signal.labels or {}
    return signal.annotations or {}


def said(
    keys: Iterable[str], remembered: Mapping[str, str], signal: Mapping[str, str] | None
) -> dict[str, str]:
    """What the instance's signals say of its domain: the remembered values of ``keys``,
    overwritten by those ``signal`` (the newest one, or None) carries; empty values are
    no values."""
    values = {}
    for key in keys:
        value = (signal or {}).get(key) or remembered.get(key)
        if value:
            values[key] = value
    return values


def resolve(
    keys: Iterable[str], said: Mapping[str, str], mapped: Mapping[str, str] | None
) -> dict[str, str]:
    """The instance's domain, key by key: what its signals said, else the mapping file's
    value; a key with neither is left out (no domain of that key)."""
    domain = {}
    for key in keys:
        value = said.get(key) or (mapped or {}).get(key)
        if value:
            domain[key] = value
    return domain


def mapped(domains: DomainMap, cluster_id: str, instance_id: str) -> Mapping[str, str] | None:
    """The mapping file's entry for an instance (the cluster-qualified one first)."""
    return domains.get(f"{cluster_id}/{instance_id}") or domains.get(instance_id)


def names(domain: Mapping[str, str]) -> tuple[str, ...]:
    """The domains an instance is in, as counted and shown: ``("ib_leaf=leaf-3", "rack=r12")``."""
    return tuple(f"{key}={value}" for key, value in sorted(domain.items()))


def key_of(name: str) -> str:
    """The key of a domain's name (``rack`` of ``rack=r12``)."""
    return name.partition("=")[0]


def parse_domain_map(text: str, source: str) -> dict[str, dict[str, str]]:
    """A mapping file's text: JSON when ``source`` ends in ``.json``, TOML otherwise.

    Each top-level key is an instance id (or ``cluster_id/instance_id``), each value a
    table of string values: ``"gpu-node-17" = { rack = "r12", ib_leaf = "leaf-3" }``.
    Raises :class:`DomainMapError`.
    """
    try:
        data: Any = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DomainMapError(f"{source}: not valid {_format(source)}: {exc}") from None
    if not isinstance(data, dict):
        raise DomainMapError(f"{source}: expected an object of instance -> {{key = value}}")
    entries: dict[str, dict[str, str]] = {}
    for instance, values in data.items():
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise DomainMapError(
                f"{source}: {instance!r}: expected a table of strings, e.g. "
                '{ rack = "r12", ib_leaf = "leaf-3" }'
            )
        entries[instance] = dict(values)
    return entries


def load_domain_map(path: Path) -> dict[str, dict[str, str]]:
    """Read and parse a mapping file; :class:`DomainMapError` (one line) if it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DomainMapError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_domain_map(text, str(path))


def _format(source: str) -> str:
    return "JSON" if source.endswith(".json") else "TOML"
