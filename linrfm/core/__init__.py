"""The parts of lin-RFM written once and shared by every problem type and backend.

- :mod:`linrfm.core.loop`: the outer loop (setup, step, stopping, history, Ctrl-C).
- :mod:`linrfm.core.kernel`: AGOP -> feature matrix -> kernel, and the objective
  the iteration decreases.
- :mod:`linrfm.core.smoothing`: scale-free smoothing (``reg``) schedules.
"""
from .kernel import kernel_from_agop, psd_power, spectral_objective, irls_objective
from .loop import LinRFMProblem, LoopResult, run_loop
from .smoothing import SmoothingSchedule

__all__ = [
    "LinRFMProblem",
    "LoopResult",
    "run_loop",
    "SmoothingSchedule",
    "kernel_from_agop",
    "psd_power",
    "spectral_objective",
    "irls_objective",
]
