"""Replaying a policy against recorded health signals, in memory, to see what it would do.

``engine`` drives the pipeline's own signal handler over in-memory tables under one
policy; ``sources`` reads the signals (the input topics by time, or a JSON Lines file);
``report`` compares two runs side by side; ``command`` is ``remediator policy replay``.
"""
