"""Bounded: no read waits past its deadline, every resource has a bound, and past it the
answer is explicit and fast (guarantee 4, and "Under load")."""
