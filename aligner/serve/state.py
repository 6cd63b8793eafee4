"""What the server's routes share: the aligner (and the batched one they correct with), the server's
options, the accepted keys, the corrections log, the metrics and the counters.

``create_app`` builds one ``ServerState`` and every route closes over it (``app.state.aligner``
holds it for tests and tools). Its own module so that the routes, which each need it, need not
import the app factory that registers them.
"""
from __future__ import annotations

from typing import Any

from .batching import DynamicBatcher
from .config import ServeConfig
from .errors import URL
from .metrics import ServeMetrics


class ServerState:
    """What the routes share: the aligner, batcher, config, keys and counters."""

    def __init__(self, aligner: Any, config: ServeConfig, records: Any = None):
        self.aligner = aligner
        self.config = config
        self.keys = config.load_api_keys()
        #: the upstream as clients see it: its name without its address (kept for the server log)
        self.upstream_label = None
        if aligner.upstream is not None:
            aligner.upstream.log_error_text = config.log_prompts  # its error text may quote the prompt
            self.upstream_label = URL.sub("", aligner.upstream.name).rstrip("@") or type(aligner.upstream).__name__
        #: one batcher per corrector (per stage of a stack: each stage batches its own model's rows)
        self.batchers: list[DynamicBatcher] = []

        def batched(corrector: Any) -> Any:
            self.batchers.append(DynamicBatcher(corrector, max_batch_size=config.max_batch_size if config.batching
                                                else 1, max_wait=config.batch_wait_ms / 1000 if config.batching
                                                else 0.0, may_join=lambda: self.in_flight))
            return corrector.through(self.batchers[-1])

        from ..correctors.stack import stacked

        #: the aligner the handlers correct with: the same, its corrector's rows batched (each
        #: stage's, for a stack), and its gate's calls batched like corrections (aligner.gates.batching)
        self.serving = aligner.with_corrector(stacked(aligner.corrector, batched))
        self.batcher = self.batchers[0]
        if aligner.gate is not None:
            from ..gates.batching import GateBatcher

            self.serving = self.serving.with_gate(GateBatcher(aligner.gate, max_batch_size=self.batcher.max_batch_size,
                                                              max_wait=self.batcher.max_wait,
                                                              may_join=lambda: self.in_flight))
        #: the corrections log (``aligner.runtime.records``), opened by ``create_app``
        self.records = records
        self.replica: str | None = None
        if records is not None:
            from ..runtime.records import replica_name

            self.replica = replica_name()
        self.metrics = ServeMetrics()
        self.metrics.hook_retries(aligner.upstream)
        names = list(config.served_model_name or [])
        if not names:
            names = [n for n in (config.upstream_model or getattr(aligner.upstream, "model", None),) if n]
            names.append("aligner")
        self.model_names = list(dict.fromkeys(names))
        self.in_flight = 0
        self.served = 0

