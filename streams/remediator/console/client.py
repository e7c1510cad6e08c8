"""The REST API (README "The REST API", additions included) as plain method calls, over httpx.

Answers are the API's JSON as dicts, untouched: the client neither drops fields it does not
know nor needs ones an older worker lacks, so one client works across versions. Every
failure is one exception with one readable line: :class:`ApiError` when the API answered
with an error (its ``error.message``), :class:`Unreachable` when there was no usable answer.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from remediator.api import tls as webtls

DEFAULT_URL = "http://127.0.0.1:6066"
BASE_PATH = "/v1/compute"
#: The cluster id and instance id that mean "all of them" in the list path.
EVERYWHERE = "-"

JSON = dict[str, Any]
Params = list[tuple[str, str | int | float | bool | None]]


class ClientError(Exception):
    """A call did not succeed; ``str()`` is one line for the operator."""


class ApiError(ClientError):
    """The API answered with an error status. ``message`` is the API's own ``error.message``."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message


class Unreachable(ClientError):
    """No usable answer: connection refused, timeout, or a body that is not the API's JSON."""


def api_root(url: str) -> str:
    """The server's root URL, whether given with or without the API's base path."""
    root = url.strip().rstrip("/")
    if root.endswith(BASE_PATH):
        root = root[: -len(BASE_PATH)]
    return root


def _segment(value: str) -> str:
    return quote(value, safe="")


def _error_from(response: httpx.Response) -> ApiError:
    name, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            name = str(error.get("status") or "")
            message = str(error.get("message") or "")
        message = message or str(body.get("message") or "")
    if not message:
        text = " ".join(response.text.split())[:200]
        message = f"HTTP {response.status_code} {response.reason_phrase}" + (
            f": {text}" if text else ""
        )
    return ApiError(response.status_code, name, message)


def _unreachable(root: str, exc: httpx.HTTPError) -> Unreachable:
    """One line saying why there was no answer, with the fix when it is a TLS mismatch."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or "certificate verify failed"
        return Unreachable(
            f"cannot reach {root}: its TLS certificate is not trusted ({reason}); give the "
            "CA that signed it with --cafile or REMEDIATOR_API_CAFILE"
        )
    hint = ""
    if root.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
        hint = " (does it serve HTTPS? then use an https:// URL)"
    return Unreachable(f"cannot reach {root}: {exc or type(exc).__name__}{hint}")


class RemediatorClient:
    """One worker's REST API. ``token`` is sent as ``Authorization: Bearer <token>``;
    over https the worker's certificate is verified against ``cafile`` when given (a PEM
    file of the CA(s) that signed it), else httpx's default CAs."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        cafile: Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.root = api_root(url)
        verify: ssl.SSLContext | bool = True
        if cafile is not None:
            try:
                verify = webtls.client_context(cafile)
            except webtls.TLSFileError as exc:
                raise ClientError(str(exc)) from None
        self._http = httpx.Client(
            base_url=self.root,
            headers=headers,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemediatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: JSON | None = None,
    ) -> JSON:
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.TimeoutException:
            raise Unreachable(
                f"{self.root} did not answer {method} {path} in time (--timeout)"
            ) from None
        except httpx.HTTPError as exc:
            raise _unreachable(self.root, exc) from None
        if response.is_error:
            raise _error_from(response)
        try:
            answer = response.json()
        except ValueError:
            raise Unreachable(
                f"{self.root} answered {method} {path} with something that is not JSON "
                "(is --url the remediator API?)"
            ) from None
        if not isinstance(answer, dict):
            raise Unreachable(f"{self.root} answered {method} {path} with unexpected JSON")
        return answer

    @staticmethod
    def _instance(cluster: str, instance: str) -> str:
        return f"{BASE_PATH}/clusters/{_segment(cluster)}/instances/{_segment(instance)}"

    def _resource(self, cluster: str, instance: str, remediation_id: str) -> str:
        return f"{self._instance(cluster, instance)}/remediations/{_segment(remediation_id)}"

    # --- remediations ---------------------------------------------------------------

    def list_remediations(
        self,
        cluster: str | None = None,
        instance: str | None = None,
        *,
        states: Iterable[str] = (),
        modes: Iterable[str] = (),
        triggers: Iterable[str] = (),
        order_by: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> JSON:
        """One page, ``{remediations, has_next, next_page_token}``. No cluster: the whole
        fleet (cluster id ``-``); no instance: the whole cluster."""
        params: Params = [("state", s) for s in states]
        params += [("mode", m) for m in modes]
        params += [("trigger", t) for t in triggers]
        if order_by:
            params.append(("order_by", order_by))
        if page_size is not None:
            params.append(("page_size", str(page_size)))
        if page_token:
            params.append(("page_token", page_token))
        path = self._instance(cluster or EVERYWHERE, instance or EVERYWHERE) + "/remediations"
        return self.request("GET", path, params=params)

    def iter_pages(self, **query: Any) -> Iterator[JSON]:
        """Every page of a list, following ``next_page_token`` to the end."""
        token = query.pop("page_token", None)
        while True:
            page = self.list_remediations(**query, page_token=token)
            yield page
            token = page.get("next_page_token") or None
            if not page.get("has_next") or token is None:
                return

    def get(self, cluster: str, instance: str, remediation_id: str) -> JSON:
        return self.request("GET", self._resource(cluster, instance, remediation_id))

    def create(
        self,
        cluster: str,
        instance: str,
        *,
        mode: str | None = None,
        reason: str | None = None,
        remediation_id: str | None = None,
    ) -> JSON:
        body = {k: v for k, v in (("mode", mode), ("reason", reason)) if v is not None}
        params: Params | None = [("remediation_id", remediation_id)] if remediation_id else None
        path = self._instance(cluster, instance) + "/remediations"
        return self.request("POST", path, params=params, body=body)

    def approve(
        self,
        cluster: str,
        instance: str,
        remediation_id: str,
        *,
        mode: str | None = None,
        comment: str | None = None,
    ) -> JSON:
        body = {k: v for k, v in (("mode", mode), ("comment", comment)) if v is not None}
        path = self._resource(cluster, instance, remediation_id) + "/approve"
        return self.request("POST", path, body=body)

    def reject(
        self, cluster: str, instance: str, remediation_id: str, *, comment: str | None = None
    ) -> JSON:
        body = {"comment": comment} if comment is not None else {}
        path = self._resource(cluster, instance, remediation_id) + "/reject"
        return self.request("POST", path, body=body)

    def cancel(self, cluster: str, instance: str, remediation_id: str) -> JSON:
        path = self._resource(cluster, instance, remediation_id) + "/cancel"
        return self.request("POST", path, body={})

    def explain(self, cluster: str, instance: str) -> JSON:
        return self.request("GET", self._instance(cluster, instance) + "/explain")

    # --- clusters -------------------------------------------------------------------

    def clusters(self) -> JSON:
        return self.request("GET", f"{BASE_PATH}/clusters")

    def safety(self, cluster: str) -> JSON:
        return self.request("GET", f"{BASE_PATH}/clusters/{_segment(cluster)}/safety")

    def pause(self, cluster: str, reason: str) -> JSON:
        path = f"{BASE_PATH}/clusters/{_segment(cluster)}/pause"
        return self.request("PUT", path, body={"reason": reason})

    def resume(self, cluster: str) -> JSON:
        return self.request("DELETE", f"{BASE_PATH}/clusters/{_segment(cluster)}/pause")
