"""Which signals an instance has already counted: a bounded, exact memory of signal ids.

Invariant 2 (a signal counts once) needs memory of the ids seen; invariant "bounded state"
needs that memory not to grow with history. :class:`RecentIds` keeps, per instance, the
ids of its ``limit`` most recent signals by event time, and answers for anything older:

- a signal whose id is remembered is a *duplicate*;
- a signal not newer than every id it ever forgot (``floor``) is *stale*: it may be a
  repeat of a forgotten one, and it is older than ``limit`` newer signals of the same
  instance, so it carries nothing new. It is ignored, exactly as a signal older than the
  dedup TTL is;
- anything else is new, and is remembered (the oldest entry is forgotten beyond ``limit``).

So the answer is always exact for the signals it calls new: no repeat is ever counted
twice, whatever order they come in, and memory is ``limit`` entries of 16 bytes.

Ids are kept as 8-byte BLAKE2b digests (a collision between two of one instance's
``limit`` remembered ids has a probability around ``limit**2 / 2**64``) with their event
time in microseconds, packed in two byte strings: tens of thousands of instances cost a
few megabytes, and the table value stays small to encode.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import sys
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from .models import assemble

_DIGEST = 8
#: Native int64: the times are also read in place through ``memoryview.cast("q")``.
_TIME = struct.Struct("=q")
assert sys.byteorder == "little", "RecentIds packs times little-endian"  # noqa: S101


def digest(key: str) -> bytes:
    """The 8-byte digest a signal key is remembered by."""
    return hashlib.blake2b(key.encode(), digest_size=_DIGEST).digest()


def micros(at: datetime) -> int:
    """Microseconds since the epoch (UTC)."""
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RecentIds(BaseModel):
    """The bounded memory; see the module docstring. Immutable: changes return a copy."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    digests: bytes = b""
    #: Event times (µs), little-endian int64, in the same order as ``digests``.
    times: bytes = b""
    #: The newest event time (µs) among forgotten ids; ``None`` until one is forgotten.
    floor: int | None = None

    def __len__(self) -> int:
        return len(self.digests) // _DIGEST

    def __contains__(self, key: str) -> bool:
        return self._index(digest(key)) >= 0

    def _index(self, wanted: bytes) -> int:
        digests = self.digests
        start = digests.find(wanted)
        while start >= 0:
            if start % _DIGEST == 0:
                return start // _DIGEST
            start = digests.find(wanted, start + 1)
        return -1

    def is_stale(self, at: datetime) -> bool:
        """Not newer than an id already forgotten: see the module docstring."""
        return self.floor is not None and micros(at) <= self.floor

    def add(self, key: str, at: datetime, *, limit: int, horizon: datetime | None) -> RecentIds:
        """Remember ``key`` at event time ``at``; forget what falls out of the memory.

        Entries older than ``horizon`` (the dedup TTL behind the newest signal) are
        forgotten first, then the oldest beyond ``limit`` entries. Entries stay sorted by
        event time, so an in-order signal is an append and forgetting is a slice.
        """
        t = micros(at)
        pos = bisect.bisect_right(memoryview(self.times).cast("q"), t)
        cut_at = pos * _DIGEST
        digests = self.digests[:cut_at] + digest(key) + self.digests[cut_at:]
        times = self.times[:cut_at] + _TIME.pack(t) + self.times[cut_at:]
        cut = 0
        if horizon is not None:
            cut = bisect.bisect_left(memoryview(times).cast("q"), micros(horizon))
        cut = max(cut, len(times) // _DIGEST - max(limit, 1))
        floor = self.floor
        if cut > 0:
            newest_forgotten: int = _TIME.unpack_from(times, (cut - 1) * _DIGEST)[0]
            floor = newest_forgotten if floor is None else max(floor, newest_forgotten)
            digests, times = digests[cut * _DIGEST :], times[cut * _DIGEST :]
        # Built from values just computed here: no validation needed (a hot path).
        return assemble(
            RecentIds,
            {"digests": digests, "times": times, "floor": floor},
            {"digests", "times", "floor"},
        )
