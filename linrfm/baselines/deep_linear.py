r"""Deep linear networks trained from small initialisation (PyTorch).

The implicit-regularisation baselines of the lin-RFM paper's claim 4:

* :class:`DeepLinearCompleter`: ``Z = W_L ... W_1`` fitted to the observed
  entries (deep matrix factorisation, Arora, Cohen, Hu & Luo 2019);
* :class:`DeepLinearSensing`: the same product fitted to linear measurements;
* :class:`DiagonalNetworkRegressor`: ``beta = u^L - v^L`` (elementwise powers)
  for sparse regression (Woodworth et al. 2020, depth ``L``).

All three run full-batch gradient descent (``optimizer="gd"``) or Adam on a
loss normalised so that one set of defaults works whatever the size and
units of the data (see each class's Notes), record the loss with time, and
stop on the **training** loss only. Fitted attributes are NumPy arrays.

References
----------
S. Arora, N. Cohen, W. Hu, Y. Luo, "Implicit regularization in deep matrix
factorization", NeurIPS 2019.
B. Woodworth, S. Gunasekar, J. Lee, E. Moroshko, P. Savarese, I. Golan,
D. Soudry, N. Srebro, "Kernel and rich regimes in overparametrized models",
COLT 2020.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.extmath import randomized_svd
from sklearn.utils.validation import check_is_fitted, validate_data

from .._memory import check_memory
from .._observations import value_scale
from ..persistence import PersistenceMixin
from .._validation import (check_choice, check_float, check_int, check_numeric_input,
                           finite_predictions)
from ..backends.registry import torch_device
from ..core.loop import LinRFMProblem, check_callback, run_loop
from ..core.namespace import require_torch
from ._completion_input import (CompletionBaselineMixin, check_observations,
                                check_sensing_input)

__all__ = ["DeepLinearCompleter", "DeepLinearSensing", "DiagonalNetworkRegressor"]


def _check_lr(value):
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"learning_rate must be 'auto' or a positive float, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"learning_rate must be 'auto' or a positive float, "
                        f"got {type(value).__name__}")
    return check_float(value, "learning_rate", low=0.0, low_inclusive=False)


def _check_train_params(est):
    depth = check_int(est.depth, "depth", low=1)
    if depth > 1000:  # the products of more factors under- or overflow float64
        raise ValueError(f"depth must be <= 1000, got {depth}")
    init_scale = est.init_scale
    if not (isinstance(init_scale, str) and init_scale == "auto"
            and isinstance(est, DiagonalNetworkRegressor)):
        init_scale = check_float(init_scale, "init_scale", low=0.0, low_inclusive=False)
    optimizer = check_choice(est.optimizer, "optimizer", {"adam", "gd"})
    lr = _check_lr(est.learning_rate)
    max_iter = check_int(est.max_iter, "max_iter", low=1)
    tol = check_float(est.tol, "tol", low=0.0)
    device = est.device
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or device.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return depth, init_scale, optimizer, lr, max_iter, tol, device


def _torch_device(device):
    """``(torch, torch.device)`` for a device name (one parser: ``registry.torch_device``)."""
    return require_torch(), torch_device(device)


def _spectral_norm(M, rng):
    if min(M.shape) <= 500:
        return float(np.linalg.norm(M, 2))
    return float(randomized_svd(M, 1, n_iter=7, random_state=rng)[1][0])


class _TrainingProblem(LinRFMProblem):
    """Full-batch training of a linear network as a :class:`~linrfm.core.loop.LinRFMProblem`.

    ``forward()`` returns ``(objective, relative_residual, iterate, grads)``;
    the objective is what is differentiated (by autograd when ``grads`` is
    None, else ``grads`` are the exact gradients of ``params``), the relative
    residual ``||A(Z) - y||^2 / ||y||^2`` is the recorded ``loss`` that
    ``tol`` applies to. One step is one optimizer update followed by a
    forward pass at the new parameters, so the iterate after ``k`` steps is
    the network after ``k`` updates. ``out_scale`` converts the iterate back
    to the units of the data for :meth:`iterate`.
    """

    tol_key = "loss"
    tol_description = "the training loss"

    def __init__(self, params, forward, optimizer: str, lr: float, torch, out_scale=1.0,
                 desc: str = "network"):
        self.params, self.forward, self.torch, self.out_scale = params, forward, torch, out_scale
        self.desc = desc
        self.opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
                    else torch.optim.SGD(params, lr=lr))

    def _evaluate(self):
        self.opt.zero_grad(set_to_none=True)
        self._objective, residual, current, self._grads = self.forward()
        return float(residual), current.detach()

    def initialize(self) -> None:
        self.loss, self.Z = self._evaluate()
        if not math.isfinite(self.loss):
            raise ValueError(f"{self.desc}: the loss is not finite at the initial point; the "
                             "data are too large or too small for float64 at this "
                             "init_scale: rescale them")

    def finite(self, record: dict) -> bool:
        return math.isfinite(record["loss"])

    def step(self) -> dict:
        if self._grads is None:
            self._objective.backward()
        else:
            for param, grad in zip(self.params, self._grads):
                param.grad = grad
        self.opt.step()
        objective = float(self._objective.detach())
        loss, Z = self._evaluate()
        norm = float(self.torch.linalg.norm(Z))
        rel = float(self.torch.linalg.norm(Z - self.Z)) / norm if norm > 0 else math.inf
        self.loss, self.Z = loss, Z
        return {"loss": loss, "objective": objective, "rel_change": rel}

    def snapshot(self):
        # The optimizer updates the parameters in place: keep copies.
        return [p.detach().clone() for p in self.params], self.Z, self.loss

    def restore(self, snap) -> None:
        values, self.Z, self.loss = snap
        with self.torch.no_grad():
            for param, value in zip(self.params, values):
                param.copy_(value)

    def iterate(self) -> np.ndarray:
        """The network's current matrix (or coefficients) in the data's units."""
        return self.Z.cpu().numpy().astype(np.float64) * self.out_scale


def _train(est, problem: _TrainingProblem, max_iter: int, tol: float, desc: str):
    """Run ``problem`` on the shared loop; returns (iterate, n_iter, history)."""
    result = run_loop(problem, max_iter=max_iter, tol=tol, verbose=est.verbose,
                      callback=check_callback(getattr(est, "callback", None)), desc=desc)
    est.stop_reason_ = result.stop_reason
    return problem.Z.cpu().numpy().astype(np.float64), result.n_iter, result.history


class _DeepLinearBase(PersistenceMixin, BaseEstimator):
    """Shared parameters and the factor product of the deep linear estimators."""

    def __init__(self, depth=2, width=None, init_scale=1e-3, optimizer="adam",
                 learning_rate="auto", max_iter=5000, tol=1e-10, device="cpu",
                 random_state=None, verbose=0, callback=None):
        self.depth = depth
        self.width = width
        self.init_scale = init_scale
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _fit_factors(self, shape, adjoint_target, residual_fn, desc, out_scale=1.0):
        """Train ``Z = W_L ... W_1`` of ``shape``.

        ``adjoint_target``: NumPy ``(d1, d2)`` estimate of the (normalised)
        target used to set the automatic step size; ``residual_fn(Z)`` returns
        ``(objective, relative residual)`` as torch scalars.
        """
        depth, init_scale, optimizer, lr, max_iter, tol, device = _check_train_params(self)
        d1, d2 = shape
        width = min(d1, d2) if self.width is None else check_int(self.width, "width", low=1)
        torch, dev = _torch_device(device)
        rng = check_random_state(self.random_state)
        if lr == "auto":
            s = max(_spectral_norm(adjoint_target, rng), 1e-12)
            lr = (0.5 / (depth * s ** (2.0 - 2.0 / depth)) if optimizer == "gd"
                  else 4e-3 * s ** (1.0 / depth) / math.sqrt(width))
        # factors, their gradients and two Adam moments, in float64
        check_memory(4 * 8.0 * depth * width * max(d1, d2, width),
                     what=f"{depth} factors of width {width}",
                     cheaper="lower depth or width")
        dims = [d2] + [width] * (depth - 1) + [d1]
        factors = [torch.tensor(init_scale * rng.standard_normal((dims[i + 1], dims[i])),
                                dtype=torch.float64, device=dev, requires_grad=True)
                   for i in range(depth)]

        def forward():
            Z = factors[0]
            for W in factors[1:]:
                Z = W @ Z
            objective, residual = residual_fn(Z)
            return objective, residual, Z, None

        problem = _TrainingProblem(factors, forward, optimizer, lr, torch, out_scale, desc)
        Z, n_iter, history = _train(self, problem, max_iter, tol, desc)
        self.learning_rate_ = float(lr)
        self.factors_ = [W.detach().cpu().numpy() for W in factors]
        return Z, n_iter, history


class DeepLinearCompleter(CompletionBaselineMixin, _DeepLinearBase):
    r"""Matrix completion by a depth-``L`` linear network ``Z = W_L ... W_1``.

    Parameters
    ----------
    depth : int, default=2
        Number of factors ``L`` (1 is plain gradient descent on ``Z``), at most 1000.
    width : int, optional
        Inner dimension of the factors; default ``min(d1, d2)``.
    init_scale : float, default=1e-3
        Standard deviation of the i.i.d. Gaussian entries of every factor at
        initialisation (small: the implicit low-rank bias).
    optimizer : {"adam", "gd"}, default="adam"
        Adam, or full-batch gradient descent as in the analyses of implicit
        regularisation. From ``init_scale=1e-3`` gradient descent escapes the
        saddle at 0 very slowly for ``depth >= 3`` (its speed scales like
        ``init_scale**(depth - 2)``); Adam does not, which is why it is the
        default. At depth 2, gradient descent generalises better from few
        samples (see docs/baselines.md).
    learning_rate : "auto" or float, default="auto"
        ``"auto"``: ``0.5 / (L s^{2 - 2/L})`` for gradient descent, where ``s``
        estimates the spectral norm of the (normalised) target, i.e. half the
        inverse curvature of the loss at a balanced solution;
        ``0.004 s^{1/L} / sqrt(width)`` for Adam (about 0.2 % of the size of a
        factor entry at a balanced solution).
    max_iter : int, default=5000
    tol : float, default=1e-10
        Stop when the relative training loss
        :math:`\|P_\Omega(Z - X)\|_F^2 / \|P_\Omega(X)\|_F^2` is below ``tol``.
    device : {"cpu", "cuda", "cuda:N"}, default="cpu"
    random_state : int, RandomState or None
        Seeds the initial factors (drawn with NumPy, so CPU and GPU start
        from the same point).
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per step (stderr).
    callback : callable, optional
        ``callback(state)`` after each gradient step with a
        :class:`~linrfm.core.loop.LoopState` (``state.iterate()`` is the
        network's current matrix or coefficients in the data's units);
        ``callback(iteration, record)`` is accepted too. Returning True stops.

    Attributes
    ----------
    completed_ : ndarray, shape (d1, d2)
        The network's matrix ``W_L ... W_1`` (observed entries are fitted, not
        copied).
    factors_ : list of ndarray
        ``W_1`` (width, d2), ..., ``W_L`` (d1, width).
    learning_rate_ : float
    n_iter_ : int
        Gradient steps taken.
    history_ : dict of lists
        ``iteration`` (steps taken), ``time`` (seconds since the start of
        the loop), ``loss`` (relative training loss above, after the step),
        ``objective`` (the differentiated loss before the step),
        ``rel_change`` of ``Z``.
    stop_reason_ : str
        ``"tol"``, ``"max_iter"``, ``"callback"``, ``"interrupted"`` or
        ``"nonfinite"`` (the loss diverged; the last finite iterate is kept).
    shape_ : tuple of int

    Notes
    -----
    The observed values are divided by ``c``, the power of two nearest their
    root mean square (exact, and finite for 1e+-300 data), and the
    loss is
    :math:`\frac{d_1 d_2}{2 |\Omega|} \sum_{(i,j)\in\Omega} (Z_{ij} - X_{ij}/c)^2`,
    an unbiased estimate of :math:`\frac12\|Z - X/c\|_F^2`, so its curvature and
    the automatic step size do not depend on the sampling rate or units;
    ``completed_`` is multiplied back by ``c``. Stopping uses the training
    loss only: with noiseless data, training to ``tol`` is what the implicit
    bias analyses study. Cost per step: ``L`` products of the factors
    (``O(L d1 d2 width)``) for the forward and backward passes.
    """

    def fit(self, X, y=None, shape=None):
        """Fit the network to the observed entries of ``X``.

        Parameters
        ----------
        X : array, sparse matrix, (rows, cols, values), DataFrame or Observations
            Observed entries (NaN marks a missing entry in dense input).
        y : None
            Ignored.
        shape : tuple of int, optional
            ``(d1, d2)`` for triplet or DataFrame input.

        Returns
        -------
        self
        """
        _check_train_params(self)
        obs = check_observations(X, shape)
        torch, dev = _torch_device(self.device)
        d1, d2 = obs.shape
        scale = value_scale(obs.values)
        weight = d1 * d2 / obs.nnz
        rows = torch.as_tensor(obs.rows, device=dev)
        cols = torch.as_tensor(obs.cols, device=dev)
        values = torch.as_tensor(obs.values / scale, dtype=torch.float64, device=dev)
        total = float(values @ values) or 1.0  # all-zero data: absolute residual

        def residual_fn(Z):
            r = Z[rows, cols] - values
            sq = r @ r
            return 0.5 * weight * sq, sq.detach() / total

        Z, self.n_iter_, self.history_ = self._fit_factors(
            obs.shape, weight * obs.to_dense(0.0) / scale, residual_fn, "DeepLinearCompleter",
            scale)
        self.completed_ = Z * scale
        self.factors_[-1] = self.factors_[-1] * scale
        self.shape_ = obs.shape
        return self


class DeepLinearSensing(_DeepLinearBase):
    r"""Low-rank recovery from ``y_k = <A_k, Z>`` by a depth-``L`` linear network.

    Parameters
    ----------
    depth, width, init_scale, optimizer, learning_rate, max_iter, tol, device, \
random_state, verbose, callback
        As in :class:`DeepLinearCompleter`; ``tol`` applies to
        :math:`\|A(Z) - y\|^2 / \|y\|^2`.

    Attributes
    ----------
    Z_ : ndarray, shape (d1, d2)
        Recovered matrix.
    factors_ : list of ndarray
    learning_rate_ : float
    n_iter_ : int
    history_ : dict of lists
        ``iteration``, ``time``, ``loss``, ``objective``, ``rel_change``.
    shape_ : tuple of int

    Notes
    -----
    Loss :math:`\frac{d_1 d_2}{2\|A\|_F^2}\|A(Z) - y/c\|^2` with ``c`` the root
    mean square of ``y`` (for i.i.d. Gaussian ``A_k`` close to
    :math:`\frac12\|Z - Z_*/c\|_F^2`). The operator is materialised as a dense
    ``(m, d1 d2)`` tensor (a direct baseline for small and medium problems).
    """

    def fit(self, A, y, shape=None):
        """Fit the network to measurements ``y_k = <A_k, Z>``.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse (m, d1*d2), or LinearOperator
            See :func:`linrfm.operators.as_measurement_operator`.
        y : array_like, shape (m,)
        shape : tuple of int, optional
            ``(d1, d2)``, required when ``A`` is flattened.

        Returns
        -------
        self
        """
        _check_train_params(self)
        op, y = check_sensing_input(A, y, shape, random_state=0)
        torch, dev = _torch_device(self.device)
        d1, d2 = op.matrix_shape
        Amat = op.to_dense()
        scale = value_scale(y)
        weight = d1 * d2 / float(np.sum(Amat ** 2))
        At = torch.as_tensor(Amat, dtype=torch.float64, device=dev)
        yt = torch.as_tensor(y / scale, dtype=torch.float64, device=dev)
        total = float(yt @ yt) or 1.0  # all-zero data: absolute residual

        def residual_fn(Z):
            r = At @ Z.reshape(-1) - yt
            sq = r @ r
            return 0.5 * weight * sq, sq.detach() / total

        target = weight * (Amat.T @ (y / scale)).reshape(d1, d2)
        Z, self.n_iter_, self.history_ = self._fit_factors((d1, d2), target, residual_fn,
                                                           "DeepLinearSensing", scale)
        self.Z_ = Z * scale
        self.factors_[-1] = self.factors_[-1] * scale
        self.shape_ = (d1, d2)
        return self

    def predict(self, A):
        """Measurements ``<A_k, Z_>`` of the recovered matrix.

        Parameters
        ----------
        A : ndarray (m, d1, d2) or (m, d1*d2), scipy.sparse, or LinearOperator

        Returns
        -------
        ndarray, shape (m,)
        """
        from ..operators import as_measurement_operator

        check_is_fitted(self, "Z_")
        return as_measurement_operator(A, self.shape_, random_state=0).forward(self.Z_)


class DiagonalNetworkRegressor(PersistenceMixin, RegressorMixin, BaseEstimator):
    r"""Sparse linear regression by a depth-``L`` diagonal linear network.

    ``beta = u^L - v^L`` (elementwise powers), trained by gradient descent on
    the squared loss from ``u = v = init_scale`` (so ``beta = 0``).

    Parameters
    ----------
    depth : int, default=2
        ``L >= 1`` (1 is plain gradient descent on ``beta``, no sparsity bias).
    init_scale : "auto" or float, default="auto"
        Initial value ``alpha`` of every entry of ``u`` and ``v``. Small
        ``alpha`` is the "rich" regime, which biases the interpolating
        solution towards minimum l1 norm (Woodworth et al. 2020).
        ``"auto"``: 1e-3 for ``depth <= 2``, 3e-2 for deeper networks, whose
        escape from ``u = v = alpha`` takes a time growing like
        ``alpha**(2 - depth)`` under gradient descent.
    optimizer : {"gd", "adam"}, default="gd"
    learning_rate : "auto" or float, default="auto"
        ``"auto"``: ``0.5 / (L^2 b^{2 - 2/L} lambda_max(X^T X / n))`` for
        gradient descent, with ``b`` the largest entry of the minimum-norm
        least-squares solution (an estimate of ``|beta|``), i.e. a fraction of
        the inverse curvature; 0.01 for Adam.
    max_iter : int, default=20000
    tol : float, default=1e-6
        Stop when :math:`\|X\beta - y\|^2 / \|y\|^2 \le tol`.
    device : {"cpu", "cuda", "cuda:N"}, default="cpu"
    verbose : int, default=0
        0 silent, 1 progress bar, 2 one line per step (stderr).
    callback : callable, optional
        ``callback(state)`` after each gradient step with a
        :class:`~linrfm.core.loop.LoopState` (``state.iterate()`` is the
        network's current matrix or coefficients in the data's units);
        ``callback(iteration, record)`` is accepted too. Returning True stops.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,)
    u_, v_ : ndarray, shape (n_features,)
        The two branches (``coef_ = (u_**L - v_**L) * scale / sx`` with ``scale``
        and ``sx`` the powers of two nearest the root mean squares of ``y`` and
        ``X``).
    learning_rate_ : float
    n_iter_ : int
    history_ : dict of lists
        ``iteration``, ``time``, ``loss``, ``objective``, ``rel_change`` of beta.
    n_features_in_ : int

    Notes
    -----
    **Signs.** With a single branch ``beta = u^L`` an even ``L`` cannot reach
    negative coefficients, and an odd ``L`` started at ``u = alpha > 0`` would
    have to cross ``u = 0`` where the gradient ``L u^{L-1} g`` vanishes. The
    two-branch form ``u^L - v^L`` (the standard one of Woodworth et al.)
    reaches every sign from the balanced start ``u = v``. No intercept is
    fitted (centre ``X`` and ``y`` first if needed). The initialisation is
    deterministic, so the estimator has no ``random_state``. ``y`` is divided
    by (the power of two nearest) its root mean square during training, so the defaults do not depend on
    its units.
    """

    def __init__(self, depth=2, init_scale="auto", optimizer="gd", learning_rate="auto",
                 max_iter=20000, tol=1e-6, device="cpu", verbose=0, callback=None):
        self.depth = depth
        self.init_scale = init_scale
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.verbose = verbose
        self.callback = callback

    def fit(self, X, y):
        """Fit the diagonal network.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : array_like, shape (n_samples,)

        Returns
        -------
        self
        """
        depth, init_scale, optimizer, lr, max_iter, tol, device = _check_train_params(self)
        if init_scale == "auto":
            init_scale = 1e-3 if depth <= 2 else 3e-2
        check_numeric_input(X, "X")
        check_numeric_input(y, "y")
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        torch, dev = _torch_device(device)
        n, d = X.shape
        sx = value_scale(X)  # exact powers of two: 1e+-300 data stay finite
        X = X / sx
        scale = value_scale(y)
        if lr == "auto":
            if optimizer == "gd":
                # all-zero X: any step size is stable (the gradient is zero)
                lam = float(np.linalg.norm(X, 2) ** 2) / n or 1.0
                b = max(float(np.max(np.abs(np.linalg.lstsq(X, y / scale, rcond=None)[0]))),
                        1e-3)
                lr = 0.5 / (depth ** 2 * b ** (2.0 - 2.0 / depth) * lam)
            else:
                lr = 1e-2
        Xt = torch.tensor(X, dtype=torch.float64, device=dev)  # copies: X may be read-only
        yt = torch.as_tensor(y / scale, dtype=torch.float64, device=dev)
        total = float(yt @ yt) or 1.0
        u = torch.full((d,), init_scale, dtype=torch.float64, device=dev)
        v = torch.full((d,), init_scale, dtype=torch.float64, device=dev)

        def forward():
            # Closed-form gradients: autograd costs ~8x more per step at these sizes.
            u_pow = u ** (depth - 1)
            v_pow = v ** (depth - 1)
            beta = u_pow * u - v_pow * v
            r = Xt @ beta - yt
            sq = r @ r
            g = (Xt.T @ r) * (depth / n)
            return 0.5 * sq / n, sq / total, beta, (u_pow * g, -v_pow * g)

        # the network fits y / scale on X / sx (exact powers of two)
        problem = _TrainingProblem([u, v], forward, optimizer, lr, torch, scale / sx,
                                   "DiagonalNetworkRegressor")
        beta, self.n_iter_, self.history_ = _train(self, problem, max_iter, tol,
                                                   "DiagonalNetworkRegressor")
        with np.errstate(over="ignore"):
            self.coef_ = beta * np.exp2(np.log2(scale) - np.log2(sx))
        self.u_ = u.detach().cpu().numpy()
        self.v_ = v.detach().cpu().numpy()
        self.learning_rate_ = float(lr)
        return self

    def predict(self, X):
        """Predicted targets ``X @ coef_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        check_is_fitted(self, "coef_")
        check_numeric_input(X, "X")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return finite_predictions(X @ self.coef_, "X")
