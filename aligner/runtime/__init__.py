"""The runtime: the machinery the providers run on — the answer-then-correct pipeline and its batching
queue, local decoding and its guards and edit checks, hub lookups, reward/cost scoring, the
corrections log. Imports only the contracts: the providers (upstreams, correctors, gates) import it,
and the Aligner (:mod:`aligner.core`) sits above both."""
