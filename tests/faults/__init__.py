"""The fault suite (issue 12): real workers on a real broker, faults injected, outcomes checked.

One module per concern: ``generator`` (signals with unique ids), ``model`` (the expected
outcome, from the generated inputs alone), ``kafka`` (producing with offsets, reading back,
lag), ``checker`` (what landed vs what the model expects), ``proxy`` (a TCP proxy on loopback
that can cut the broker connection), ``scenarios`` (the faults) and ``runner`` (the table;
``python -m tests.faults.runner [--short]``, ``make test-faults``).
"""
