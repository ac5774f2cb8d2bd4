"""Seeded problem generators and loaders for packaged real data.

Generators take ``random_state`` and never touch NumPy's global RNG. Loaders
read data shipped inside other packages at run time; nothing is vendored.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

from ._observations import Observations, as_observations

__all__ = [
    "information_limit",
    "make_low_rank_matrix",
    "make_completion_problem",
    "make_sparse_regression",
    "make_sensing_problem",
    "CompletionProblem",
    "REFERENCE_PROBLEMS",
    "ReferenceProblem",
    "make_reference_problem",
    "reference_problem",
    "load_movielens_100k",
    "load_image",
]


def information_limit(d1: int, d2: int, rank: int) -> int:
    """Degrees of freedom ``r (d1 + d2 - r)`` of a rank-``r`` ``d1 x d2`` matrix."""
    return int(rank * (d1 + d2 - rank))


def make_low_rank_matrix(d1: int, d2: int, rank: int, *, condition_number: float = 1.0,
                         random_state=None) -> np.ndarray:
    """Random rank-``rank`` matrix with mean-square entry 1.

    ``condition_number == 1``: product of two Gaussian factors. Otherwise the
    singular values are spaced geometrically from 1 to ``1/condition_number``
    with Haar-random singular vectors.

    Returns
    -------
    ndarray, shape (d1, d2)
    """
    rng = check_random_state(random_state)
    if condition_number == 1.0:
        Z = rng.standard_normal((d1, rank)) @ rng.standard_normal((rank, d2))
    else:
        U, _ = np.linalg.qr(rng.standard_normal((d1, rank)))
        V, _ = np.linalg.qr(rng.standard_normal((d2, rank)))
        s = np.geomspace(1.0, 1.0 / condition_number, rank)
        Z = (U * s) @ V.T
    return Z / np.sqrt(np.mean(Z ** 2))


@dataclass
class CompletionProblem:
    """A synthetic completion problem: what the user sees and the hidden truth.

    Attributes
    ----------
    observed : Observations
        The sampled entries, the only thing an estimator may be given.
    truth : ndarray, shape (d1, d2)
        The full matrix, for evaluation only.
    rank : int
    """

    observed: Observations
    truth: np.ndarray
    rank: int

    def missing_error(self, Z: np.ndarray) -> float:
        """Relative Frobenius error of ``Z`` on the unobserved entries."""
        mask = np.ones(self.truth.shape, dtype=bool)
        mask[self.observed.rows, self.observed.cols] = False
        diff = (Z - self.truth)[mask]
        return float(np.linalg.norm(diff) / np.linalg.norm(self.truth[mask]))


def make_completion_problem(d1: int, d2: int, rank: int, *, oversampling: float | None = None,
                            n_observed: int | None = None, condition_number: float = 1.0,
                            noise: float = 0.0, random_state=None) -> CompletionProblem:
    """Low-rank matrix with entries sampled uniformly without replacement.

    Give either ``oversampling`` (multiple of ``r (d1 + d2 - r)``) or
    ``n_observed``. ``noise`` adds Gaussian noise of that standard deviation
    to the observed values (the truth stays clean).
    """
    rng = check_random_state(random_state)
    if (oversampling is None) == (n_observed is None):
        raise ValueError("give exactly one of oversampling and n_observed")
    if n_observed is None:
        n_observed = int(round(oversampling * information_limit(d1, d2, rank)))
    if not 1 <= n_observed <= d1 * d2:
        raise ValueError(f"n_observed must be in [1, {d1 * d2}], got {n_observed}")
    Z = make_low_rank_matrix(d1, d2, rank, condition_number=condition_number, random_state=rng)
    flat = np.sort(rng.choice(d1 * d2, size=n_observed, replace=False))
    rows, cols = np.divmod(flat, d2)
    values = Z[rows, cols] + noise * rng.standard_normal(n_observed)
    return CompletionProblem(as_observations((rows, cols, values), shape=(d1, d2)), Z, rank)


# The completion problems of SPEC section 7 (the MatrixIRLS comparison):
# name -> (d1, d2, rank, oversampling, n_observed, condition_number, seed).
REFERENCE_PROBLEMS = {
    "500_r5_10000": (500, 500, 5, None, 10_000, 1.0, 1),
    "1000_r5_1.5x": (1000, 1000, 5, 1.5, None, 1.0, 2),
    "1000_r5_2x": (1000, 1000, 5, 2.0, None, 1.0, 3),
    "1000_r5_3x": (1000, 1000, 5, 3.0, None, 1.0, 4),
    "1000_r10_cond100_2x": (1000, 1000, 10, 2.0, None, 100.0, 5),
    "2000_r10_3x": (2000, 2000, 10, 3.0, None, 1.0, 6),
    "5000_r10_3x": (5000, 5000, 10, 3.0, None, 1.0, 7),
}


@dataclass
class ReferenceProblem:
    """A completion problem whose truth is kept as factors ``left @ right.T``.

    Unlike :class:`CompletionProblem` nothing of size ``d1 x d2`` is stored,
    so problems with billions of entries can be generated and scored.

    Attributes
    ----------
    observed : Observations
        The sampled entries, the only thing an estimator may be given.
    left : ndarray, shape (d1, r)
    right : ndarray, shape (d2, r)
        Hidden truth ``Y = left @ right.T`` (evaluation only).
    rank : int
    """

    observed: Observations
    left: np.ndarray
    right: np.ndarray
    rank: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.left.shape[0], self.right.shape[0])

    @property
    def truth(self) -> np.ndarray:
        """Dense truth, shape (d1, d2); only for problems that fit in memory."""
        return self.left @ self.right.T

    def _missing_norm2(self, rows=None) -> float:
        # ||Y||_F^2 from the r x r Grams, minus the observed part (of the rows kept).
        left, values = self.left, self.observed.values
        if rows is not None:
            left, values = left[rows], values[rows[self.observed.rows]]
        total = float(np.sum((left.T @ left) * (self.right.T @ self.right)))
        return total - float(np.sum(values.astype(np.float64) ** 2))

    def missing_error(self, Z: np.ndarray) -> float:
        """Relative Frobenius error of a dense estimate on the unobserved entries."""
        mask = np.ones(self.shape, dtype=bool)
        mask[self.observed.rows, self.observed.cols] = False
        diff = (Z - self.truth)[mask]
        return float(np.linalg.norm(diff) / np.sqrt(self._missing_norm2()))

    def missing_error_factored(self, A: np.ndarray, B: np.ndarray, rows=None) -> float:
        """Relative error on the unobserved entries of the estimate ``A @ B.T``.

        Exact, in ``O((d1 + d2) k^2 + |Omega| k)``: the Frobenius norm of the
        low-rank difference ``A B^T - Y`` from the triangular factors of its
        two sides (accurate to rounding, down to ~1e-15 relative), minus its
        part on the observed entries. Use it for estimates that are low rank off the
        observed entries (the observed entries themselves do not count).

        Parameters
        ----------
        A : ndarray, shape (d1, k)
        B : ndarray, shape (d2, k)
        rows : ndarray of bool, shape (d1,), optional
            Count only the unobserved entries of these rows (e.g. the rows with at
            least ``rank`` observations, the ones any method can recover), relative
            to the norm of the truth there.
        """
        L = np.hstack([A, -self.left])
        R = np.hstack([B, self.right])
        o = self.observed
        obs_rows, obs_cols = o.rows, o.cols
        if rows is not None:
            rows = np.asarray(rows, dtype=bool)
            if rows.shape != (self.shape[0],):
                raise ValueError(f"rows must be a boolean mask of shape ({self.shape[0]},), "
                                 f"got {rows.shape}")
            keep = rows[obs_rows]
            L, obs_rows, obs_cols = L[rows], np.cumsum(rows)[obs_rows[keep]] - 1, obs_cols[keep]
        # ||L R^T||_F from the triangular QR factors, not from the Grams
        # L^T L, R^T R: squaring would lose everything below ~1e-8 relative.
        core = np.linalg.qr(L, mode="r") @ np.linalg.qr(R, mode="r").T
        full = float(np.sum(core * core))
        on_obs = np.einsum("ij,ij->i", L[obs_rows], R[obs_cols])
        err2 = max(full - float(on_obs @ on_obs), 0.0)
        return float(np.sqrt(err2 / self._missing_norm2(rows)))


def make_reference_problem(d1: int, d2: int, rank: int, *, oversampling: float | None = None,
                           n_observed: int | None = None, condition_number: float = 1.0,
                           random_state=None) -> ReferenceProblem:
    """The completion problems of SPEC section 7, drawn exactly as specified there.

    ``rng = np.random.default_rng(random_state)``; ``U`` (d1 x r) then ``V``
    (d2 x r) standard normal; for ``condition_number != 1`` both are replaced
    by their reduced-QR factors and ``U`` scaled by
    ``logspace(0, -log10(cond), r)``; ``Y = U V^T`` scaled so that
    ``||Y||_F = sqrt(d1 d2)``; ``m = n_observed`` or
    ``floor(oversampling * r (d1 + d2 - r))`` positions drawn with
    ``rng.choice(d1 * d2, m, replace=False)``, sorted, row-major. See
    :data:`REFERENCE_PROBLEMS` for the named cases and their seeds.

    Returns
    -------
    ReferenceProblem
    """
    if (oversampling is None) == (n_observed is None):
        raise ValueError("give exactly one of oversampling and n_observed")
    rng = np.random.default_rng(random_state)
    U = rng.standard_normal((d1, rank))
    V = rng.standard_normal((d2, rank))
    if condition_number != 1.0:
        U = np.linalg.qr(U)[0] * np.logspace(0, -np.log10(condition_number), rank)
        V = np.linalg.qr(V)[0]
    norm = np.sqrt(float(np.sum((U.T @ U) * (V.T @ V))))
    U = U * (np.sqrt(float(d1) * d2) / norm)
    m = n_observed if n_observed is not None else int(
        np.floor(oversampling * information_limit(d1, d2, rank)))
    if not 1 <= m <= d1 * d2:
        raise ValueError(f"the number of observed entries must be in [1, {d1 * d2}], got {m}")
    flat = np.sort(rng.choice(d1 * d2, m, replace=False))
    rows, cols = np.divmod(flat, d2)
    values = np.einsum("ij,ij->i", U[rows], V[cols])
    return ReferenceProblem(as_observations((rows, cols, values), shape=(d1, d2)), U, V, rank)


def reference_problem(name: str) -> ReferenceProblem:
    """One of the named :data:`REFERENCE_PROBLEMS` (e.g. ``"2000_r10_3x"``)."""
    if name not in REFERENCE_PROBLEMS:
        raise ValueError(f"unknown reference problem {name!r}; choose from "
                         f"{sorted(REFERENCE_PROBLEMS)}")
    d1, d2, r, rho, m, cond, seed = REFERENCE_PROBLEMS[name]
    return make_reference_problem(d1, d2, r, oversampling=rho, n_observed=m,
                                  condition_number=cond, random_state=seed)


def make_sparse_regression(n_samples: int, n_features: int, n_nonzero: int, *, noise: float = 0.0,
                           random_state=None):
    """Gaussian design and a ``n_nonzero``-sparse coefficient vector.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray, shape (n_samples,)
    coef : ndarray, shape (n_features,)
        Non-zeros are standard Gaussian on a uniformly random support.
    """
    rng = check_random_state(random_state)
    X = rng.standard_normal((n_samples, n_features))
    coef = np.zeros(n_features)
    support = rng.choice(n_features, size=n_nonzero, replace=False)
    coef[support] = rng.standard_normal(n_nonzero)
    y = X @ coef + noise * rng.standard_normal(n_samples)
    return X, y, coef


def make_sensing_problem(d1: int, d2: int, rank: int, n_measurements: int, *, random_state=None):
    """Gaussian measurements ``y_k = <A_k, Z>`` of a low-rank ``Z``.

    Returns
    -------
    A : ndarray, shape (n_measurements, d1, d2)
        i.i.d. N(0, 1/n_measurements) entries.
    y : ndarray, shape (n_measurements,)
    Z : ndarray, shape (d1, d2)
    """
    rng = check_random_state(random_state)
    Z = make_low_rank_matrix(d1, d2, rank, random_state=rng)
    A = rng.standard_normal((n_measurements, d1, d2)) / np.sqrt(n_measurements)
    y = np.einsum("kij,ij->k", A, Z)
    return A, y, Z


def _cache_dir() -> Path:
    root = os.environ.get("LINRFM_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "linrfm")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


_ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def load_movielens_100k(cache_dir=None):
    """MovieLens-100K ratings as observations of a 943 x 1682 matrix.

    The file ships inside the ``recbole==1.2.1`` wheel. It is fetched with
    ``pip download --no-deps`` into a cache (``$LINRFM_DATA`` or
    ``~/.cache/linrfm``) and read from there; recbole is never installed or
    imported. MovieLens terms forbid redistribution, so nothing is vendored.

    Returns
    -------
    observations : Observations
        Ratings 1-5; user and item ids mapped to 0-based indices in sorted id
        order.
    user_ids, item_ids : ndarray
        Original ids of each row and column.
    """
    cache = Path(cache_dir) if cache_dir else _cache_dir()
    target = cache / "ml-100k.inter"
    if not target.exists():
        wheels = list(cache.glob("recbole-1.2.1-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "-d", str(cache), "recbole==1.2.1"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(cache.glob("recbole-1.2.1-*.whl"))
            if proc.returncode != 0 or not wheels:
                raise OSError("could not download the recbole==1.2.1 wheel that ships "
                              f"MovieLens-100K:\n{proc.stderr.strip()}")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(_ML100K_MEMBER)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    table = np.loadtxt(target, delimiter="\t", skiprows=1, usecols=(0, 1, 2))
    user_ids, rows = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    item_ids, cols = np.unique(table[:, 1].astype(np.int64), return_inverse=True)
    obs = as_observations((rows, cols, table[:, 2]), shape=(user_ids.size, item_ids.size))
    return obs, user_ids, item_ids


def load_image(name: str = "camera") -> np.ndarray:
    """A grayscale test image from scikit-image, scaled to [0, 1].

    Parameters
    ----------
    name : {"camera", "astronaut"}

    Returns
    -------
    ndarray, shape (h, w), float64
    """
    try:
        from skimage import color, data
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("images need scikit-image: pip install 'linrfm[data]'") from exc
    if name == "camera":
        img = data.camera().astype(np.float64) / 255.0
    elif name == "astronaut":
        img = color.rgb2gray(data.astronaut())
    else:
        raise ValueError(f"unknown image {name!r}; choose 'camera' or 'astronaut'")
    return img
