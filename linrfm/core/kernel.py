r"""AGOP -> feature matrix -> kernel, and the objective lin-RFM decreases.

Conventions (SPEC §1): ``power`` is the exponent applied to the AGOP ``G`` to
get the feature matrix ``M = G**power``; the kernel is ``K = M^T M =
G**(2*power)``. lin-RFM with ``power`` is IRLS-p with ``p = 2 - 4*power``.

Cost of the kernel by power:

* ``power = 1/2``: ``K = G``, nothing to compute ("SVD-free");
* ``power = k/2`` (``k`` integer): ``k - 1`` matrix products;
* any other power: one ``eigh`` of the symmetric PSD ``G``, eigenvalues
  clipped at 0 (never a full SVD).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..backends._threads import blas_threads
from .namespace import get_namespace

__all__ = [
    "kernel_exponent",
    "psd_power",
    "kernel_from_agop",
    "spectral_objective",
    "irls_objective",
]


def kernel_exponent(power: float) -> float:
    """Exponent ``2*power`` that maps the AGOP to the kernel."""
    return 2.0 * float(power)


def _integer_exponent(exponent: float) -> int | None:
    k = round(exponent)
    return int(k) if k >= 1 and abs(exponent - k) < 1e-12 else None


def psd_power(G, exponent: float):
    """Matrix power ``G**exponent`` of a symmetric PSD matrix.

    Parameters
    ----------
    G : ndarray or torch.Tensor, shape (d, d)
        Symmetric positive semi-definite (up to rounding).
    exponent : float
        Positive exponent. Integers use repeated products; anything else one
        symmetric eigendecomposition with negative eigenvalues clipped to 0.

    Returns
    -------
    ndarray or torch.Tensor, shape (d, d)
        Same namespace, dtype and device as ``G``; symmetric.
    """
    if exponent <= 0:
        raise ValueError(f"exponent must be > 0, got {exponent}")
    k = _integer_exponent(exponent)
    if k is not None:
        out = G
        for _ in range(k - 1):
            out = out @ G
        return out
    xp = get_namespace(G)
    if xp is np:
        # One BLAS thread: LAPACK's eigh is many thread hand-offs; on the shared
        # 2-core machine (load ~5) a 1682 x 1682 eigh took 0.7 s with one thread
        # and 1.2-46 s with two (the power-1/4 MovieLens fit stalled on it).
        with blas_threads(1):
            w, V = np.linalg.eigh(G)
        w = np.clip(w, 0.0, None) ** exponent
    else:
        w, V = xp.linalg.eigh(G)
        w = w.clamp(min=0.0) ** exponent
    return (V * w) @ V.T


def kernel_from_agop(G, power: float, diagonal: bool = False):
    """Kernel ``G**(2*power)`` from an AGOP.

    Parameters
    ----------
    G : array, shape (d, d), or shape (d,) when ``diagonal``
        The AGOP (or its diagonal).
    power : float
        lin-RFM power (> 0).
    diagonal : bool
        Treat ``G`` as the diagonal of a diagonal AGOP (elementwise power).

    Returns
    -------
    array, same shape as ``G``
    """
    q = kernel_exponent(power)
    if diagonal:
        xp = get_namespace(G)
        return (xp.abs(G) if xp is not np else np.abs(G)) ** q
    return psd_power(G, q)


def _h_lin_rfm(s: np.ndarray, q: float, reg: float) -> np.ndarray:
    """``h(s) = int_0^s dt / (t**q + reg)`` elementwise, ``s >= 0``."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, None)
    if abs(q - 1.0) < 1e-12:
        return np.log1p(s / reg)
    if abs(q - 2.0) < 1e-12:
        r = np.sqrt(reg)
        return np.arctan(s / r) / r
    x = s / reg ** (1.0 / q)
    # int_0^x dv/(1+v^q) = x 2F1(1, 1/q; 1 + 1/q; -x^q)
    val = x * special.hyp2f1(1.0, 1.0 / q, 1.0 + 1.0 / q, -(x ** q))
    return reg ** (1.0 / q - 1.0) * val


def spectral_objective(eigs, power: float, reg: float) -> float:
    r"""Objective decreased by lin-RFM at fixed ``reg`` (ridge form).

    .. math:: F = \sum_j h(\lambda_j), \qquad h'(s) = 1 / (s^{2\,power} + reg)

    where :math:`\lambda_j` are the eigenvalues of the AGOP (for a diagonal
    AGOP, its diagonal). Each lin-RFM step with kernel ``G**(2 power) + reg I``
    is a majorize-minimize step on ``F``, so ``F`` never increases.

    Parameters
    ----------
    eigs : array_like, shape (d,)
        Eigenvalues of the AGOP (negative rounding noise is clipped to 0).
    power : float
        lin-RFM power (> 0).
    reg : float
        Smoothing (> 0).

    Returns
    -------
    float
    """
    if reg <= 0:
        raise ValueError(f"reg must be > 0 for the objective, got {reg}")
    return float(np.sum(_h_lin_rfm(np.asarray(eigs), kernel_exponent(power), reg)))


def irls_objective(eigs, power: float, eps: float) -> float:
    r"""Smoothed IRLS-p objective, with ``p = 2 - 4 power``.

    .. math:: F = \sum_j h(\lambda_j), \qquad h'(s) = (s + \epsilon)^{-2\,power}

    i.e. ``sum_j (lambda_j + eps)**(p/2)`` up to constants and the factor
    ``2/p`` (``log`` for ``p = 0``). IRLS with weights ``(G + eps I)**(-2 power)``
    is a majorize-minimize step on it.

    Parameters
    ----------
    eigs : array_like, shape (d,)
        Eigenvalues of the AGOP.
    power : float
        lin-RFM power (> 0).
    eps : float
        Smoothing (> 0).

    Returns
    -------
    float
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0 for the objective, got {eps}")
    s = np.clip(np.asarray(eigs, dtype=float), 0.0, None)
    q = kernel_exponent(power)
    if abs(q - 1.0) < 1e-12:
        return float(np.sum(np.log1p(s / eps)))
    return float(np.sum(((s + eps) ** (1.0 - q) - eps ** (1.0 - q)) / (1.0 - q)))
