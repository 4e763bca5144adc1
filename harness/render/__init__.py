"""Render stage: turn a saved results document into text. Never measures."""
