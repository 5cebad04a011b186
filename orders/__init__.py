"""The write side: normalised models, commands, the transactional outbox and the command API."""
