"""The REST API of the write side: commands and strong reads."""
