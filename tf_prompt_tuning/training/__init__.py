"""Training: the compiled step, the fault-tolerant loop and its checkpoints,
freezing, distribution strategies, and the cache of frozen reads."""
