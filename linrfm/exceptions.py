"""Warnings raised by linrfm.

Errors use the standard types scikit-learn users expect (``ValueError``,
``TypeError``); warnings get their own classes so they can be filtered.
"""
from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning

__all__ = [
    "LinRFMWarning",
    "ConvergenceWarning",
    "InterruptedFitWarning",
    "NonFiniteWarning",
    "UnobservedWarning",
    "NumericalWarning",
]


class LinRFMWarning(UserWarning):
    """Base class of every warning emitted by linrfm."""


class ConvergenceWarning(LinRFMWarning, _SkConvergenceWarning):
    """The loop hit ``max_iter`` before its stopping rule was met."""


class InterruptedFitWarning(LinRFMWarning):
    """The fit was interrupted (Ctrl-C); the best iterate so far was kept."""


class UnobservedWarning(LinRFMWarning):
    """Some rows or columns have no observed entry and cannot be recovered."""


class NumericalWarning(LinRFMWarning):
    """A numerical fault was handled: a singular system solved with a recorded
    jitter, or a non-finite iterate rejected (the last finite one is kept)."""


class NonFiniteWarning(NumericalWarning, ConvergenceWarning):
    """An iteration diverged (non-finite iterate or loss); the loop stopped and
    kept the last finite iterate (``stop_reason_ == "nonfinite"``)."""
