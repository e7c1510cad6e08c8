"""Remediator links GPU-cluster health checks to node remediations."""

__version__ = "0.5.0"
