"""Faults injected for real (stopped, killed, cut-off servers and workers), with work in
flight; marked `faults` (make test-faults). test_faults.py runs a whole throwaway shop."""
