"""Access: who may read and do what (customers, staff permissions), signed tokens and
callbacks, throttles, internal endpoints."""
