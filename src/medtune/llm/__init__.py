"""Every way to reach a model, below every task: one protocol (`protocol.py`) with hf, vllm and endpoint implementations, the one HTTP client, and a server."""
