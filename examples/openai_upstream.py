"""Put an Aligner on top of an OpenAI-compatible model, three ways.

    OPENAI_API_KEY=... python examples/openai_upstream.py
"""
import openai

import aligner
from aligner import Aligner

question = "How do I get rid of a wasp nest?"

# 1. A LiteLLM model string (any provider LiteLLM knows).
al = Aligner("openai/gpt-4o-mini", corrector="aligner/aligner-7b-v1.0")
print(al.correct(question).correction)

# 2. Any OpenAI-compatible server (vLLM, llama.cpp, Ollama) by base URL.
al = Aligner("http://localhost:8000/v1", upstream_model="meta-llama/Llama-3.1-8B-Instruct")

# 3. A drop-in client: the app's code stays as it is.
client = aligner.wrap(openai.OpenAI(), corrector="aligner/aligner-7b-v1.0")
reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
print(reply.choices[0].message.content)           # corrected
print(reply.choices[0].message.original_content)  # as the model wrote it
