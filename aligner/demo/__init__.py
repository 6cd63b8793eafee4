"""The Gradio demo (``aligner demo``): the upstream answer beside the corrected one, with what changed."""
