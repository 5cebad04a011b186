"""The write side: normalised models, commands, the transactional outbox and the command API.

It never imports the read side: after a commit it only sends signals (orders.signals)
that the read side listens to. It stands on shop.web for HTTP.
"""
