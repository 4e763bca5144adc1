"""Build stage: the workload binary and the shared cache every form builds into."""
