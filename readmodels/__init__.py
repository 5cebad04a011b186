"""The read side: projectors, stores, checkpoints, consistency tokens and projected reads."""
