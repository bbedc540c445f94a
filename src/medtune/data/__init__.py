"""Data: readers per format, prompt templates, tokenization with loss masks, batching."""
