"""Atomic: a state change and its outbox rows commit together or not at all (DESIGN guarantee 1)."""
