"""Measure stage: readiness probes and memory figures, shared by the forms."""
