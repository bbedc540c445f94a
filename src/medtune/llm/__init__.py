"""Text generators behind one interface: a local model or an OpenAI-compatible endpoint, and a server."""
