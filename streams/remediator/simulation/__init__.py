"""Simulators for trying the service without a real fleet or control plane.

- :mod:`.controlplane`: the simulated compute control plane, an HTTP server
  (``remediator control-plane``, or ``python -m remediator.simulation.controlplane``);
- :mod:`.inprocess`: the same, run inside the worker when no control-plane URL is set;
- :mod:`.fleet`: a simulated GPU fleet sending health signals (``remediator simulate``).
"""
