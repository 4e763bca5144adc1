"""Analyse stage: statistics over the raw samples kept in a results file."""
