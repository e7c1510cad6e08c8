"""The orjson codec: Faust's serializer for everything not already bytes.

Payloads on our own topics are written as bytes by the pydantic models; this codec is
what Faust uses for its own values (``value_serializer="orjson"``): faster than the
stdlib ``json`` codec and strict about UTF-8.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

NAME = "orjson"


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def register() -> None:
    """Make ``"orjson"`` a serializer name Faust knows. Idempotent."""
    codecs.register(NAME, OrjsonCodec())
