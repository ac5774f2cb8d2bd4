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
