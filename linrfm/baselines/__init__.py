"""Baselines with the same estimator contract and data formats as lin-RFM.

IRLS-p with eigendecompositions (completion, sensing), MatrixIRLS (second-order
IRLS for completion), Soft-Impute, deep linear
networks (matrix factorisation and diagonal networks) and l1 minimisation.
"""
from .._lazy import lazy_getattr

_BASELINES = {
    "BasisPursuit": ".l1",
    "IRLSCompleter": ".irls",
    "IRLSSensing": ".irls",
    "MatrixIRLSCompleter": ".matrix_irls",
    "SoftImpute": ".soft_impute",
    "DeepLinearCompleter": ".deep_linear",
    "DeepLinearSensing": ".deep_linear",
    "DiagonalNetworkRegressor": ".deep_linear",
}

__all__ = list(_BASELINES)
__getattr__ = lazy_getattr(__name__, _BASELINES)


def __dir__():
    return sorted(__all__)
