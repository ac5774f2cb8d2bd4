"""Completion engines other than the dense one (see :mod:`linrfm.engines.lowrank`)."""
