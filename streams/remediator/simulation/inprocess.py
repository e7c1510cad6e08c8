"""The built-in simulated control plane, run inside the worker when no URL is configured.

A thin :class:`mode.Service` around
:class:`remediator.simulation.controlplane.ControlPlaneSimulator`, so it starts and stops
with the app. Its URL is logged at start; its ``/_sim/*`` endpoints
switch latency, failures and outages at run time (see the README).

It requires a bearer token on ``/v1`` like a real control plane, so that the default
``make run`` goes through the same authentication as production: the worker's
``REMEDIATOR_CONTROL_PLANE_TOKEN`` when set, else one made up at start and handed to the
executor's client in-process (:func:`with_token`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

from mode import Service

from remediator.pipeline.credentials import ControlPlaneCredentials
from remediator.simulation.controlplane import ControlPlaneSimulator

log = logging.getLogger(__name__)


class SimulatedControlPlane(Service):
    def __init__(
        self, *, token: str, host: str = "127.0.0.1", port: int = 0, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._host = host
        self._port = port
        self.simulator = ControlPlaneSimulator(token=token)
        self._url: str | None = None

    async def on_start(self) -> None:
        self._url = await self.simulator.start(self._host, self._port)
        log.info("simulated control plane listening on %s", self._url)

    async def on_stop(self) -> None:
        await self.simulator.stop()

    def base_url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulated control plane is not started")
        return self._url


def with_token(credentials: ControlPlaneCredentials) -> ControlPlaneCredentials:
    """``credentials`` with a bearer token: theirs, else a new random one."""
    if credentials.token is not None:
        return credentials
    return dataclasses.replace(credentials, token=secrets.token_urlsafe(32))
