"""``POST /v1/feedback``: a user's rating of a served correction, stored beside its log row.

Every response carries its correction's id (``aligner.id``, the completion's ``id``); a client
sends it back with ``rating`` -1 (worse than the answer, or wrong), 0 (no opinion / neutral) or 1
(good), and optionally a ``label`` (its own category), a ``comment`` and ``corrected_text``: a
better correction the user wrote, kept as such for the next training set (``aligner export
--with-user-corrections``). Any replica sharing the log takes feedback for a row another one
wrote. Same key rule as the chat route. A rating of the same id again replaces the earlier one.
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from .auth import authorize
from .body import check_content_type, read_json
from .errors import APIError, shown

FIELDS = ("id", "rating", "label", "comment", "corrected_text")
#: longest texts taken, in characters
LIMITS = {"id": 200, "label": 100, "comment": 10_000, "corrected_text": 100_000}
RATINGS = (-1, 0, 1)


def parse_feedback(body: Any) -> tuple[str, dict[str, Any]]:
    """The checked ``(id, fields)`` of a feedback body; a 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise APIError(400, "body must be a JSON object: {\"id\", \"rating\", \"label\"?, \"comment\"?, "
                            "\"corrected_text\"?}.", code="invalid_request")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise APIError(400, f"{unknown[0]}: unknown field; feedback takes {', '.join(FIELDS)}.", param=unknown[0],
                       code="unknown_parameter")
    cid = body.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise APIError(400, "id: required, the correction's id (aligner.id of the response).", param="id",
                       code="invalid_value")
    rating = body.get("rating")
    if "rating" not in body:
        raise APIError(400, "rating: required, -1, 0 or 1.", param="rating", code="missing_required_parameter")
    if isinstance(rating, bool) or not isinstance(rating, int) or rating not in RATINGS:
        raise APIError(400, f"rating: must be -1, 0 or 1 (a whole number), got {shown(rating)}.",
                       param="rating", code="invalid_value")
    out: dict[str, Any] = {"rating": rating}
    for name in ("label", "comment", "corrected_text"):
        value = body.get(name)
        if value is None:
            out[name] = None
            continue
        if not isinstance(value, str) or (name == "corrected_text" and not value.strip()):
            raise APIError(400, f"{name}: must be a non-empty string or left out.", param=name, code="invalid_value")
        out[name] = value
    for name, limit in LIMITS.items():
        value = cid if name == "id" else out.get(name)
        if value is not None and len(value) > limit:
            raise APIError(400, f"{name}: longer than {limit} characters.", param=name, code="invalid_value")
    return cid, out


def add_feedback_route(app: Any, state: Any) -> None:
    """Register ``POST /v1/feedback`` on the server's app."""
    from ..runtime.records import FeedbackUnavailable, feedback_row

    @app.post("/v1/feedback")
    @app.post("/v1/feedback/", include_in_schema=False)
    async def feedback(request: Request) -> dict[str, Any]:
        authorize(request, state)
        check_content_type(request.headers.get("content-type"))
        body = await read_json(request, state.config.max_body_bytes, state.config.body_timeout)
        cid, fields = parse_feedback(body)
        if state.records is None:
            raise APIError(404, "this server keeps no corrections log, so it has no row to attach feedback to "
                                "(its operator can start it with --log-corrections).", code="no_corrections_log")
        try:
            found = await asyncio.to_thread(state.records.feedback, cid, feedback_row(**fields))
        except FeedbackUnavailable as exc:
            raise APIError(503, f"{exc}; retry shortly.", code="log_unavailable", headers={"Retry-After": "5"}) from exc
        if not found:
            raise APIError(404, f"id: no logged correction has id {cid[:80]!r} (answers passed on uncorrected — "
                                "bypassed, tool calls, requested JSON — are not logged).", param="id",
                           code="not_found")
        state.metrics.count_feedback(fields["rating"])
        return {"object": "aligner.feedback", "id": cid, "rating": fields["rating"], "stored": True}
