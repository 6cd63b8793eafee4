"""Jobs: work over many rows — the resumable batch job (``aligner generate``), its Ray engine, shard
merging. Built on the runtime; no application imports back into it."""
