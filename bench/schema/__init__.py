"""Typed records at the kit's boundaries: the one normalized point record and the run's summary."""
