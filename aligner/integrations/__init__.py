"""Integrations: the Aligner inside other people's servers (a LiteLLM proxy guardrail, :mod:`.litellm`)."""
