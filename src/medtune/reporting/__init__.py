"""Reporting: console tables for people, files for programs."""
