"""Evaluation: exams, prompts, generation, answer parsing, scoring (Algorithm 1), metrics."""
