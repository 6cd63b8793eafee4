"""The runtime: what runs one correction — the Aligner, the answer-then-correct pipeline, local decoding
and its guards, the corrections log. Imports the contracts and the provider packages, never a job or
an application."""
