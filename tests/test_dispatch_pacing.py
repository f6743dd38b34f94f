"""When the dispatch loop and the offer-expiry sweep wake (``tracker.dispatch.pacing``, sans-I/O).

On a sped-up clock (a replay's ``TRACKER_TIME_SCALE``) a real millisecond is many server
milliseconds: the sweep used to pause at least 50 ms real between passes, 15 s of server time
at x300, so offers expired up to 15 s after their ``expires_at``; and the loop slept a whole
interval after each pass, so rounds came an interval plus the pass's length apart. A live
test of this measured milliseconds of real time and failed under a loaded machine; the rule
itself is checked here, exactly.
"""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tracker.dispatch.pacing import SWEEP_CAP_REAL_S, SWEEP_FLOOR_REAL_S, next_round_wait_s, sweep_wait_real_s


def test_at_x300_the_sweep_wakes_when_the_next_offer_falls_due() -> None:
    now = 1_000_000
    wait = sweep_wait_real_s(now, now + 6_000, 300.0)  # due in 6 server seconds: 20 ms real
    assert abs(wait - 0.02) < 1e-9  # (the old rule: 50 ms real at least, 15 server seconds)
    assert abs(wait * 300.0 * 1000 - 6_000) < 1  # wakes within a server millisecond of it
    assert sweep_wait_real_s(now, now + 600_000, 300.0) == SWEEP_CAP_REAL_S  # far off: looks again meanwhile


def test_a_due_entry_is_looked_at_again_soon_but_the_sweep_never_spins() -> None:
    assert sweep_wait_real_s(5_000, 4_000, 300.0) == SWEEP_FLOOR_REAL_S  # overdue (another process has it)
    assert sweep_wait_real_s(5_000, None, 1.0) == 1.0  # nothing pending: a second, for new offers
    assert sweep_wait_real_s(5_000, None, 300.0) == SWEEP_CAP_REAL_S  # but not 300 times a second


@given(now=st.integers(0, 10**13), ahead=st.integers(-10**7, 10**7), scale=st.floats(0.01, 1000.0))
def test_the_sweep_never_wakes_after_an_entry_is_due_unless_the_cap_says_so(now: int, ahead: int, scale: float) -> None:
    wait = sweep_wait_real_s(now, now + ahead, scale)
    assert SWEEP_FLOOR_REAL_S <= wait <= max(SWEEP_CAP_REAL_S, 1.0 / scale)
    if ahead > 0 and wait > SWEEP_FLOOR_REAL_S:
        assert wait * scale * 1000 <= ahead + 1e-6 * max(1, ahead)  # (in server ms: not past the entry)


def test_rounds_start_an_interval_apart_however_long_a_pass_takes() -> None:
    assert next_round_wait_s(started_ms=0, now_ms=4_000, interval_s=10.0) == 6.0  # a 4 s pass: 6 s more
    assert next_round_wait_s(started_ms=0, now_ms=0, interval_s=10.0) == 10.0
    assert next_round_wait_s(started_ms=0, now_ms=13_000, interval_s=10.0) == 0.0  # overran: at once, no catch-up
