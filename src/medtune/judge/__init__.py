"""Pairwise judging of two systems' answers with the Vietnamese chatbot paper's rubric (`judge.py`)."""
