"""linrfm: Linear Recursive Feature Machines.

lin-RFM alternates a minimum-norm linear fit in a reweighted feature space
with an update of the feature matrix from the fit's average gradient outer
product (AGOP). It is IRLS-p with ``p = 2 - 4 * power``.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
