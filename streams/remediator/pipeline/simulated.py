"""The built-in simulated control plane, run inside the worker when no URL is configured.

A thin :class:`mode.Service` around :class:`remediator.simulator.ControlPlaneSimulator`, so
it starts and stops with the app. Its URL is logged at start; its ``/_sim/*`` endpoints
switch latency, failures and outages at run time (see the README).
"""

from __future__ import annotations

import logging

from mode import Service

from remediator.simulator import ControlPlaneSimulator

log = logging.getLogger(__name__)


class SimulatedControlPlane(Service):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._host = host
        self._port = port
        self.simulator = ControlPlaneSimulator()
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
