"""The contamination.py task: an exam's questions audited against training data (`medtune.exam.contamination`)."""
