"""Models: the tiny local builder, checkpoint resolution and loading, quantization, adapters."""
