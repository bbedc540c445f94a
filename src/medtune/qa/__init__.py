"""QA generation from documents (`generate_qa.py`): chunk, prompt a generator, parse, validate, dedupe, write."""
