"""``POST /v1.0/$batch``: JSON batching as https://learn.microsoft.com/graph/json-batching describes it.

- At most **20** requests, each with a unique ``id``, a ``method`` and a
  ``url`` relative to the version (``/users/…``); more, or a malformed body,
  is a 400 for the whole batch. Otherwise the batch itself answers 200.
- Each sub-request goes through the same stack as a direct call (token,
  throttling, faults, request log), so a throttled one comes back as its own
  ``429`` with its own ``Retry-After``.
- ``dependsOn`` makes the batch sequential in dependency order; a request
  whose dependency did not succeed gets **424 Failed Dependency**.
- Without ``dependsOn``, at most 4 run in parallel (Outlook's limit) and the
  responses come back in completion order, not request order.
- A sub-request with a body must say its ``Content-Type``.
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from flask import Blueprint, jsonify, request

from .graphapi import emulator, graph_error

bp = Blueprint("batch", __name__, url_prefix="/v1.0")

MAX_REQUESTS = 20
PARALLEL = 4  # "For Outlook, Graph runs at most 4 sub-requests of an unordered batch in parallel."
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _problem(requests_: Any) -> str | None:
    if not isinstance(requests_, list) or not requests_:
        return "The batch request must contain a non-empty 'requests' array."
    if len(requests_) > MAX_REQUESTS:
        return f"The number of requests in a batch cannot exceed {MAX_REQUESTS}."
    ids = set()
    for item in requests_:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k) for k in ("id", "method", "url")):
            return "Each request in a batch needs string 'id', 'method' and 'url' properties."
        if item["method"].upper() not in METHODS:
            return f"Invalid method '{item['method']}' in batch request '{item['id']}'."
        if item["id"] in ids:
            return f"Duplicate request id '{item['id']}' in batch."
        ids.add(item["id"])
    for item in requests_:
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or any(d not in ids or d == item["id"] for d in depends):
            return f"Request '{item['id']}' depends on an unknown request."
    return None


def _run(app: Any, base_url: str, authorization: str, item: dict[str, Any]) -> dict[str, Any]:
    """Execute one sub-request against the app itself; return its batch response entry."""
    headers = {k: str(v) for k, v in (item.get("headers") or {}).items()}
    data = None
    if "body" in item:
        if not any(k.lower() == "content-type" for k in headers):
            return _entry(item["id"], 400, {"error": {"code": "BadRequest",
                                                      "message": "Content-Type header is required when a body is given."}})
        data = json.dumps(item["body"]) if not isinstance(item["body"], str) else item["body"]
    headers["Authorization"] = authorization
    headers["X-Emulator-Batch"] = "1"
    url = item["url"] if item["url"].startswith("/") else "/" + item["url"]
    if not url.lower().startswith("/v1.0/"):
        url = "/v1.0" + url
    with app.test_client() as client:
        response = client.open(url, method=item["method"].upper(), headers=headers, data=data, base_url=base_url)
    out_headers = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "retry-after", "location",
                                                                                 "preference-applied")}
    raw = response.get_data()
    if not raw:
        body = None
    elif response.mimetype == "application/json":
        body = json.loads(raw)
    else:
        body = base64.b64encode(raw).decode()  # non-JSON bodies come back base64-encoded
    return _entry(item["id"], response.status_code, body, out_headers)


def _entry(request_id: str, status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": request_id, "status": status, "headers": headers or {}}
    if body is not None:
        entry["body"] = body
        entry["headers"].setdefault("Content-Type", "application/json")
    return entry


def _order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dependency order (Kahn), stable in request order."""
    done: set[str] = set()
    ordered: list[dict[str, Any]] = []
    pending = list(items)
    while pending:
        ready = [i for i in pending if set(i.get("dependsOn", [])) <= done]
        if not ready:
            raise ValueError("The dependsOn graph of the batch has a cycle.")
        for item in ready:
            ordered.append(item)
            done.add(item["id"])
            pending.remove(item)
    return ordered


@bp.post("/$batch")
def batch():
    body = request.get_json(silent=True)
    requests_ = body.get("requests") if isinstance(body, dict) else None
    problem = _problem(requests_)
    if problem:
        return graph_error(400, "BadRequest", problem)
    emu = emulator()
    app, authorization = emu.app, request.headers.get("Authorization", "")
    if any(item.get("dependsOn") for item in requests_):
        try:
            ordered = _order(requests_)
        except ValueError as exc:
            return graph_error(400, "BadRequest", str(exc))
        results: dict[str, dict[str, Any]] = {}
        for item in ordered:
            failed = [d for d in item.get("dependsOn", []) if not 200 <= results[d]["status"] < 300]
            if failed:
                results[item["id"]] = _entry(item["id"], 424, {"error": {
                    "code": "FailedDependency", "message": f"The request depends on a failed request: {', '.join(failed)}."}})
            else:
                results[item["id"]] = _run(app, emu.url, authorization, item)
        responses = [results[item["id"]] for item in ordered]
    else:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            futures = [pool.submit(_run, app, emu.url, authorization, item) for item in requests_]
            responses = [f.result() for f in as_completed(futures)]  # completion order, as Graph may answer
    return jsonify({"responses": responses})
