"""Record stage: results files (versioned schema, atomic writes) and environment metadata."""
