"""linrfm: Linear Recursive Feature Machines.

lin-RFM alternates a minimum-norm linear fit in a reweighted feature space
with an update of the feature matrix from the fit's average gradient outer
product (AGOP). It is IRLS-p with ``p = 2 - 4 * power``.

Estimators
----------
LinRFMRegressor
    Sparse (diagonal AGOP) and reduced-rank (full AGOP) linear regression.
LinRFMCompleter
    Matrix completion, row-decoupled and SVD-free for ``power = 1/2``.
LinRFMSensing
    Low-rank recovery from general linear measurements.
"""
from ._lazy import lazy_getattr

__version__ = "0.1.0"

_ESTIMATORS = {
    "LinRFMRegressor": ".problems.regression",
    "LinRFMCompleter": ".problems.completion",
    "LinRFMSensing": ".problems.sensing",
}

# linrfm.load(path): any saved model, class read from the file (allow-listed)
_FUNCTIONS = {"load": ".persistence"}

__all__ = ["__version__", *_ESTIMATORS, *_FUNCTIONS]
__getattr__ = lazy_getattr(__name__, {**_ESTIMATORS, **_FUNCTIONS})


def __dir__():
    return sorted(__all__)
