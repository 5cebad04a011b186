"""The API contract: the consistency contract (tokens, headers, sessions, the stream), the
shapes of answers and errors, OpenAPI, and bad input."""
