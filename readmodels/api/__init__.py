"""The projected-read API: endpoints served from Elasticsearch and Redis."""
