"""Operators' tools on the read side: rebuild, reconcile, retention, restore, dead letters,
status and lag samples.

They build on the pipeline (readmodels.pipeline), never the other way round.
"""
