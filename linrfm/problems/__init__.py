"""The problem types: what each one adds to the shared loop.

Each module holds one problem type as a :class:`~linrfm.core.loop.LinRFMProblem`
(one iteration's maths: AGOP, kernel, minimum-norm fit, smoothing update) and
its scikit-learn estimator (validation, building the problem, running the
loop, copying the result into fitted attributes):

- :mod:`~linrfm.problems.completion`: matrix completion (:class:`LinRFMCompleter`);
- :mod:`~linrfm.problems.regression`: sparse and reduced-rank regression
  (:class:`LinRFMRegressor`);
- :mod:`~linrfm.problems.sensing`: low-rank recovery from linear measurements
  (:class:`LinRFMSensing`).
"""
