"""The machinery the upstream contract (``aligner.adapters``) and the corrector contract
(``aligner.correctors``) both stand on, so neither imports the other.

- :mod:`aligner.contracts.streaming`: the stop-aware stream parser and the one sync<->async bridge.
- :mod:`aligner.transport.retry`: the retry policy, back-off, rate limit and the retry loops.
- :mod:`aligner.transport.openai_http`: the OpenAI wire protocol over httpx (JSON, SSE, error
  bodies, ``GET /models`` discovery).

Nothing here imports a provider library at import time: ``import aligner`` stays light.
"""
