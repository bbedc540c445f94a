"""Pairwise judging of two systems' answers with the Vietnamese chatbot paper's rubric (`evaluate.py eval=judge`)."""
