"""QA generation from documents (`task=generate_qa`): chunk, prompt a generator, parse, validate, dedupe, write."""
