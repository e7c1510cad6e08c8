"""How large anything the service writes may grow: every limit in one place, and why.

Apache Kafka refuses a record batch over ``message.max.bytes`` (1 MB by default), and a
record it refuses would stall its partition. Inputs may each be up to 256 KiB
(``REMEDIATOR_MAX_INPUT_BYTES``) and an API body up to 64 KiB, and the service copies
parts of them into records that live on (a remediation gathers up to 100 signals and
100 linked alerts, the archive keeps 50 closed remediations in one value). So:

1. strings copied from input or from the API are clipped where they enter (the input
   models' field types below): valid input is never refused, what is stored or echoed
   is truncated, and says so (``…(truncated, N bytes)``);
2. a remediation record is kept under :data:`MAX_REMEDIATION_BYTES` by dropping its
   oldest correlated signals and linked alerts (``domain/budget.py``);
3. the JSON Lines logs (archive, decisions) and the pages of list replies are cut by
   bytes as well as by count;
4. what is still too large when it is sent is dropped, counted and dead-lettered by the
   sender (``pipeline/outbox.py``, ``REMEDIATOR_MAX_OUTPUT_BYTES``): a last resort that
   never stalls a partition, which nothing above should ever leave it to use.

Each budget below leaves room for the record that wraps it: a transition is a
remediation plus a reason, an instance's state value an open remediation plus a waiting
proposal (one signal, one alert) and small bookkeeping, an ``explain`` reply an open
remediation, recent closed ones and the decision log; all stay well under 1 MB.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

#: Names and ids copied from input: instance names, tests, alert names, label values.
#: Real ones are tens of characters; Kubernetes caps object names at 253.
MAX_NAME_CHARS = 256
#: Free text: an active run's message, API reasons and comments (the API refuses more
#: than 4096 characters already), control-plane errors. A paragraph, not a log file.
MAX_TEXT_CHARS = 4096
#: A passive alert's annotations, as linked alerts carry them: Alertmanager annotations
#: are a handful of short labels, a summary and a description. A remediation carries up
#: to 100 linked alerts in every transition, so each stays a few KiB at most.
MAX_ANNOTATIONS = 32
MAX_ANNOTATION_KEY_CHARS = 64
MAX_ANNOTATION_VALUE_CHARS = 1024

#: One remediation record, serialized: a quarter of Kafka's default limit, so that the
#: transition, the state value and the replies that wrap it stay far below it. Records
#: over it drop their oldest signals and linked alerts down to :data:`TRIM_TO_BYTES`,
#: so that the next few changes need no measuring (see ``domain/budget.py``).
MAX_REMEDIATION_BYTES = 256 * 1024
TRIM_TO_BYTES = 192 * 1024
#: The archive value (closed remediations of one instance, JSON Lines): at least the
#: newest, then as many of the older ones as fit.
MAX_ARCHIVE_BYTES = 512 * 1024
#: The decision log of one instance (each decision is a signal reference and a reason).
MAX_DECISIONS_BYTES = 128 * 1024
#: A page of remediations in one list reply (and one HTTP answer): at least one record,
#: then as many as fit; the client pages on for the rest.
MAX_PAGE_BYTES = 512 * 1024
#: The closed remediations an ``explain`` reply shows (``recent``), at least the newest.
MAX_RECENT_BYTES = 256 * 1024


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else a prefix that says how large
    the whole was, ``limit`` characters in all. Clipping a clipped string changes nothing."""
    if len(text) <= limit:
        return text
    size = len(text.encode("utf-8", "surrogatepass"))
    marker = f"…(truncated, {size} bytes)"
    return text[: max(limit - len(marker), 0)] + marker


#: How much of a value a client sent is repeated in an error message about it.
MAX_ECHO_CHARS = 120


def echo(value: object) -> str:
    """``repr(value)`` for an error message, clipped: an error about input never repeats
    more than :data:`MAX_ECHO_CHARS` characters of it."""
    return clip(repr(value), MAX_ECHO_CHARS)


def clip_name(text: str) -> str:
    return clip(text, MAX_NAME_CHARS)


def clip_text(text: str) -> str:
    return clip(text, MAX_TEXT_CHARS)


def clip_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """At most :data:`MAX_ANNOTATIONS` pairs (the first ones), keys and values clipped."""
    if _within(annotations, MAX_ANNOTATION_VALUE_CHARS):
        return annotations  # the usual case: nothing to clip, one pass
    return {
        clip(key, MAX_ANNOTATION_KEY_CHARS): clip(value, MAX_ANNOTATION_VALUE_CHARS)
        for key, value in list(annotations.items())[:MAX_ANNOTATIONS]
    }


def clip_labels(labels: dict[str, str]) -> dict[str, str]:
    """Like annotations, values being names (a rack, a leaf switch)."""
    if _within(labels, MAX_NAME_CHARS):
        return labels
    return {
        clip(key, MAX_ANNOTATION_KEY_CHARS): clip_name(value)
        for key, value in list(labels.items())[:MAX_ANNOTATIONS]
    }


def _within(pairs: dict[str, str], value_chars: int) -> bool:
    # A plain loop: this runs for every passive event (a generator costs twice as much).
    if len(pairs) > MAX_ANNOTATIONS:
        return False
    for key, value in pairs.items():
        if len(key) > MAX_ANNOTATION_KEY_CHARS or len(value) > value_chars:
            return False
    return True


#: Field types of the input models: accepted at any length, stored clipped.
Name = Annotated[str, AfterValidator(clip_name)]
Text = Annotated[str, AfterValidator(clip_text)]
Annotations = Annotated[dict[str, str], AfterValidator(clip_annotations)]
Labels = Annotated[dict[str, str], AfterValidator(clip_labels)]
