"""``aligner generate``: answer prompts with an upstream and correct them at scale — pipelined,
resumable, sharded across machines, or on a Ray cluster (:mod:`aligner.generate.ray_engine`)."""
