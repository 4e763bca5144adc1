"""Run stage: the matrix, the engine and VMM drivers, and the runner that walks the cells."""
