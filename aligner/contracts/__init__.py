"""The contracts: the types and formats every layer shares (a correction, decoding settings, templates,
errors, rows, the plug-in registry). Standard library only, so anything may import them."""
