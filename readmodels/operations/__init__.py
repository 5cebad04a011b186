"""Operators' tools on the read side: rebuild, reconcile, retention, dead letters, status.

They build on the pipeline (readmodels.pipeline), never the other way round.
"""
