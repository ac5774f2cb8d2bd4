"""SmoothingSchedule: the adaptive rule, its relative form, fixed smoothing, state."""
import math

import pytest

from linrfm.core.smoothing import SmoothingSchedule


def test_absolute_rule_takes_the_minimum_in_absolute_units():
    s = SmoothingSchedule("auto", decrease=0.1)
    assert s.start(2.0) == 2.0
    # the scale grew 100x: the candidate 0.1 * 0.5 * 200 = 10 does not bind
    assert s.update(0.5, 200.0) == 2.0
    assert s.update(0.01, 200.0) == pytest.approx(0.2)


def test_relative_rule_carries_the_smoothing_with_the_scale():
    s = SmoothingSchedule("auto", decrease=0.1, relative=True)
    s.start(2.0)
    # value / scale = 1 carried to the new scale (200), then min with 0.1 * 0.5 * 200
    assert s.update(0.5, 200.0) == pytest.approx(10.0)
    # the scale halves: 10 -> 5, the candidate 0.1 * 0.2 * 100 = 2 binds
    assert s.update(0.2, 100.0) == pytest.approx(2.0)
    # never above the previous value relative to the scale
    assert s.update(0.9, 100.0) == pytest.approx(2.0)
    assert s.relative_value == pytest.approx(1.0)


def test_rank_hint_and_floor_apply_in_both_forms():
    for relative in (False, True):
        s = SmoothingSchedule("auto", decrease=0.1, reg_min=1e-3, relative=relative)
        s.start(1.0)
        assert s.update(1.0, 1.0, tail_eig=0.01) == pytest.approx(0.01)
        assert s.update(1e-9, 1.0) == pytest.approx(1e-3)  # floor: reg_min * scale0


@pytest.mark.parametrize("relative", [False, True])
def test_fixed_smoothing_never_moves(relative):
    s = SmoothingSchedule(0.3, relative=relative)
    s.start(4.0)
    assert s.update(1e-6, 400.0) == pytest.approx(1.2)


def test_state_round_trip_continues_identically():
    a = SmoothingSchedule("auto", relative=True)
    a.start(1.0)
    a.update(0.5, 3.0)
    b = SmoothingSchedule("auto", relative=True)
    b.set_state(a.state())
    assert b.update(0.4, 7.0) == a.update(0.4, 7.0)
    # a state saved before "last_scale" existed still loads (absolute first update)
    c = SmoothingSchedule("auto", relative=True)
    c.set_state({"value": 0.5, "scale0": 1.0})
    assert math.isnan(c.state()["last_scale"])
    assert c.update(1.0, 10.0) == pytest.approx(0.5)
    assert c.update(1.0, 20.0) == pytest.approx(1.0)  # relative again from there
