"""The machinery the upstream contract (``aligner.adapters``) and the corrector contract
(``aligner.correctors``) both stand on, so neither imports the other.

- :mod:`aligner.transport.streaming`: the stop-aware stream parser and the one sync<->async bridge.

Nothing here imports a provider library at import time: ``import aligner`` stays light.
"""
