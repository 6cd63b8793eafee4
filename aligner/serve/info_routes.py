"""``GET /health`` and ``GET /v1/models``: what this server is, what it serves and what it has done.

A load balancer's probe reads ``/health`` without a key and gets a bare "ok"; a key holder gets
the details (the corrector, the upstream's name without its address, the counters, the batchers'
and the gate's figures, the corrections log's state). ``/v1/models`` lists the served model names,
as an OpenAI client's model picker expects. (``/metrics`` is :mod:`.metrics`'.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from .auth import authorize, key_error

if TYPE_CHECKING:
    from ..gates.batching import GateBatcher
    from .state import ServerState


def add_info_routes(app: FastAPI, state: ServerState) -> None:
    """Register ``/health`` and ``/v1/models`` on the server's app."""
    aligner = state.aligner

    @app.api_route("/health", methods=["GET", "HEAD"])
    @app.api_route("/health/", methods=["GET", "HEAD"], include_in_schema=False)
    async def health(request: Request) -> dict[str, Any]:
        # A load balancer's probe needs no key; what the server runs (file paths, the upstream's
        # address) is for key holders only.
        if state.keys is not None and key_error(request, state) is not None:
            return {"status": "ok"}
        return {"status": "ok", "corrector": aligner.corrector.name, "demo": aligner.is_demo,
                "upstream": state.upstream_label, "models": state.model_names,
                "in_flight": state.in_flight, "served": state.served, "batching": state.batcher.stats.to_dict(),
                **({"batching_stages": [b.stats.to_dict() for b in state.batchers]} if len(state.batchers) > 1 else {}),
                "corrections_log": state.records.health() if state.records is not None else None,
                **({"gate": _gate_stats(state.serving.gate)} if state.serving.gate is not None else {})}

    @app.get("/v1/models")
    @app.get("/v1/models/", include_in_schema=False)
    async def models(request: Request) -> dict[str, Any]:
        authorize(request, state)
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "aligner-kit"}
                                           for n in state.model_names]}


def _gate_stats(gate: GateBatcher) -> dict[str, Any]:
    """What the gate in front of the corrector did: how many answers it judged, in how many calls
    (the server always asks its gate through a GateBatcher, which counts them)."""
    return {"kind": gate.kind, "name": gate.name, "answers": gate.answers, "batches": gate.batches,
            "largest_batch": gate.largest_batch}
