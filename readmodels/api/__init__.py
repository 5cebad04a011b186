"""The projected reads: endpoints served from Elasticsearch and Redis, with their consistency.

base (the view every projected read is: headers, SLO check, fallback), tokens (what a
read asks to wait for), waits (the wait), early_waits (the wait, before Django), stream
(the consistency stream), openapi (what the schema says of them), views, serializers.
"""
