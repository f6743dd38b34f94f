"""Bad input to the kernel raises TypeError/ValueError with a clear message, never crashes."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dispatch_ext import _kernel, _pure

IMPLS = [pytest.param(_kernel, id="compiled"), pytest.param(_pure, id="pure")]
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad, where", [(np.nan, "cost[1, 2]"), (-np.inf, "cost[1, 2]")])
def test_nan_and_negative_infinity_name_the_entry(impl, bad, where) -> None:
    cost = np.zeros((3, 4))
    cost[1, 2] = bad
    cost[2, 0] = bad
    with pytest.raises(ValueError, match=re.escape(where)):
        impl.linear_assignment(cost)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cost", [np.zeros(3), np.zeros((2, 2, 2)), 5.0, [[1, 2], [3]]])
def test_wrong_shape_is_a_value_error(impl, cost) -> None:
    with pytest.raises(ValueError, match="cost"):
        impl.linear_assignment(cost)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cost", [
    [["a", "b"], ["c", "d"]],
    np.array([[object(), 1]], dtype=object),
    np.array([[1 + 2j]]),
    [[None, 1.0]],
    "matrix",
])
def test_non_numeric_costs_are_a_type_error(impl, cost) -> None:
    with pytest.raises(TypeError, match="cost must hold real numbers"):
        impl.linear_assignment(cost)


@pytest.mark.parametrize("impl", IMPLS)
def test_integer_bool_and_float32_costs_are_converted(impl) -> None:
    for cost in (np.array([[3, 1], [1, 3]], dtype=np.int32),
                 np.array([[True, False], [False, True]]),
                 np.array([[3, 1], [1, 3]], dtype=np.float32),
                 np.array([[3, 1], [1, 3]], dtype=np.uint8)):
        rows, cols = impl.linear_assignment(cost)
        assert (rows.tolist(), cols.tolist()) == ([0, 1], [1, 0])


@pytest.mark.parametrize("impl", IMPLS)
def test_non_contiguous_and_read_only_input(impl) -> None:
    base = np.arange(48, dtype=float).reshape(6, 8) % 7
    view = base[::2, ::3]
    view_ro = view.copy()
    view_ro.setflags(write=False)
    for cost in (view, view_ro, np.asfortranarray(base)):
        rows, cols = impl.linear_assignment(cost)
        assert len(rows) == min(cost.shape)


@st.composite
def _any_matrix(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int8]))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6))
    elements = None if dtype in (np.int64, np.int8) else \
        st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype == np.float32 else 64)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(cost=_any_matrix())
def test_any_numeric_matrix_gives_a_valid_answer_or_a_value_error(impl, cost) -> None:
    c = cost.astype(np.float64)
    bad = np.isnan(c) | np.isneginf(c)
    if bad.any():
        with pytest.raises(ValueError, match=r"cost\[\d+, \d+\]"):
            impl.linear_assignment(cost)
        return
    rows, cols = impl.linear_assignment(cost)
    assert rows.dtype == cols.dtype == np.int64
    assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == len(cols)
    assert not np.isposinf(c[rows, cols]).any()
    if np.isfinite(c).all():
        assert len(rows) == min(c.shape)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(junk=st.one_of(
    st.none(), st.text(max_size=5), st.dictionaries(st.text(max_size=2), st.integers()),
    st.lists(st.one_of(st.text(max_size=2), st.none(), st.floats()), max_size=4),
    st.lists(st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=1)), max_size=3),
             max_size=3),
))
def test_junk_is_rejected_with_a_typed_error(impl, junk) -> None:
    try:
        rows, cols = impl.linear_assignment(junk)
    except (TypeError, ValueError) as exc:
        assert "cost" in str(exc)
    else:  # only a genuine numeric matrix may get through
        assert np.asarray(junk).ndim == 2 and len(rows) <= min(np.asarray(junk).shape)


# ------------------------------------------------------------------- the other functions


@pytest.mark.parametrize("impl", IMPLS)
def test_travel_and_pickup_reject_bad_arguments(impl) -> None:
    with pytest.raises(ValueError, match="same length"):
        impl.travel_minutes([0, 1], [0], [0], [0], 320)
    with pytest.raises(ValueError, match="meters_per_minute must be > 0"):
        impl.travel_minutes([0], [0], [0], [0], 0)
    with pytest.raises(ValueError, match=r"a_x\[0\] must be finite"):
        impl.travel_minutes([np.nan], [0], [0], [0], 320)
    with pytest.raises(ValueError, match=r"b_x\[1\] must be finite and within"):
        impl.travel_minutes([0], [0], [0, 1e300], [0, 0], 320)
    with pytest.raises(TypeError, match="b_y must hold real numbers"):
        impl.travel_minutes([0], [0], [0], ["x"], 320)
    with pytest.raises(ValueError, match="rider_free_at"):
        impl.pickup_times([0], [0], [0, 1], [9], [0], [0], [0], 320, 4, 30)
    with pytest.raises(ValueError, match="pickup_service_min must be >= 0"):
        impl.pickup_times([0], [0], [0], [9], [0], [0], [0], 320, -4, 30)
    with pytest.raises(TypeError, match="max_travel_min must be a real number"):
        impl.pickup_times([0], [0], [0], [9], [0], [0], [0], 320, 4, "30")


@pytest.mark.parametrize("impl", IMPLS)
def test_drop_sequence_and_bundles_reject_bad_arguments(impl) -> None:
    with pytest.raises(ValueError, match="at most 6 drop-off stops"):
        impl.best_drop_sequence(0, 0, np.arange(7.0), np.zeros(7), 320, 4)
    with pytest.raises(ValueError, match="same length"):
        impl.best_drop_sequence(0, 0, [1, 2], [1, 2], 320, 4, weights=[1.0])
    with pytest.raises(ValueError, match="max_size must be <= 6"):
        impl.bundle_orders([0], [0], [1], [1], 0, 0, 7, 10, 10, 320, 4)
    with pytest.raises(TypeError, match="max_size must be an integer"):
        impl.bundle_orders([0], [0], [1], [1], 0, 0, 2.5, 10, 10, 320, 4)
    with pytest.raises(ValueError, match="same length"):
        impl.bundle_orders([0, 1], [0], [1, 2], [1, 2], 0, 0, 2, 10, 10, 320, 4)
    with pytest.raises(ValueError, match="site_of_order entries must index site_x"):
        impl.bundle_orders_by_site([0, 3], [0, 1], [0, 0], [1, 2], [1, 2], [0], [0], 2, 10,
                                   10, 320, 4)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(
    xs=hnp.arrays(np.float64, st.integers(0, 7), elements=st.floats(allow_nan=True,
                                                                      allow_infinity=True)),
    speed=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)),
    service=st.floats(allow_nan=True, allow_infinity=True),
)
def test_drop_sequence_never_crashes(impl, xs, speed, service) -> None:
    try:
        order, offsets = impl.best_drop_sequence(0.0, 0.0, xs, xs[::-1].copy(), speed, service)
    except (TypeError, ValueError):
        return
    assert sorted(order.tolist()) == list(range(len(xs)))
    assert len(offsets) == len(xs)


_COST_ARGS = dict(rider_x=[0.0], rider_y=[0.0], rider_free_at=[0.0], rider_shift_end=[np.inf], bundle_x=[1e3],
                  bundle_y=[0.0], bundle_ready_at=[0.0], bundle_size=[1.0], bundle_drop_sum=[0.0], bundle_reward=[0.0],
                  meters_per_minute=320.0, pickup_service_min=4.0, max_travel_min=np.inf, wait_weight=0.5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("changed", "named"), [
    ({"meters_per_minute": 1e-320}, "meters_per_minute must be >= 1e-05"),  # a travel of inf minutes: inf - inf
    ({"rider_free_at": [1.7e308], "bundle_x": [1e9]}, r"rider_free_at\[0\] must be finite and within \+-1e\+15"),
    ({"bundle_drop_sum": [1e308], "bundle_reward": [-1e308]}, r"bundle_drop_sum\[0\] must be finite and within"),
    ({"bundle_reward": [1.7e308]}, r"bundle_reward\[0\] must be finite and within"),
    ({"bundle_size": [1e300]}, r"bundle_size\[0\] must be finite and within"),
    ({"pickup_service_min": 1.7e308}, "pickup_service_min must be <= 1e\\+15"),
    ({"wait_weight": 1e308}, "wait_weight must be <= 1e\\+15"),
])
def test_assignment_costs_refuse_what_would_make_a_cost_nan(impl, changed, named) -> None:
    """Inputs that passed validation gave NaN costs, which linear_assignment then blamed on its own argument."""
    with pytest.raises(ValueError, match=named):
        impl.assignment_costs(**{**_COST_ARGS, **changed})


_ANY_TIME = st.floats(allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(free_at=_ANY_TIME, ready=_ANY_TIME, drop_sum=_ANY_TIME, reward=_ANY_TIME, x=_ANY_TIME,
       size=st.floats(1, 1e300).map(np.floor), speed=st.floats(5e-324, 1e308), service=st.floats(0, 1e308),
       weight=st.floats(0, 1e308), shift_end=st.floats(allow_nan=False))
def test_assignment_costs_are_numbers_or_inf_or_a_named_error(impl, free_at, ready, drop_sum, reward, x, size, speed,
                                                                service, weight, shift_end) -> None:
    args = dict(_COST_ARGS, rider_free_at=[free_at], bundle_ready_at=[ready], bundle_drop_sum=[drop_sum],
                bundle_reward=[reward], bundle_x=[x], bundle_size=[size], meters_per_minute=speed,
                pickup_service_min=service, wait_weight=weight, rider_shift_end=[shift_end])
    try:
        cost = impl.assignment_costs(**args)
    except ValueError as exc:
        assert re.match(r"(rider_free_at|bundle_\w+|meters_per_minute|pickup_service_min|wait_weight)\b", str(exc))
        return
    assert not np.isnan(cost).any() and not np.isneginf(cost).any(), (args, cost)
    impl.linear_assignment(cost)  # takes it


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, 1e308, 2e15])
def test_weights_must_be_finite_and_within_max_minutes(impl, bad) -> None:
    """site_weight and weights are documented finite and within +-1e15 (MAX_MINUTES): an inf
    site_weight made demand_density NaN (inf * exp(-big) = inf * 0), and inf or 1e308 drop-off
    weights made every order's objective inf or NaN, so the first permutation came back."""
    with pytest.raises(ValueError, match=r"site_weight\[1\] must be finite and within \+-1e\+15"):
        impl.demand_density([0.0], [0.0], [0.0, 1e6], [0.0, 0.0], [1.0, bad], 1.0, 1.0)
    with pytest.raises(ValueError, match=r"weights\[0\] must be finite and within \+-1e\+15"):
        impl.best_drop_sequence(0.0, 0.0, [1000.0, 100.0], [0.0, 0.0], 100.0, 2.0, [bad, 1.0])


@pytest.mark.parametrize("impl", IMPLS)
def test_weights_at_the_bound_are_accepted(impl) -> None:
    got = impl.demand_density([0.0], [0.0], [0.0], [0.0], [1e15], 1.0, 1.0)
    assert got.tolist() == [1e15]
    order, _ = impl.best_drop_sequence(0.0, 0.0, [1000.0, 100.0], [0.0, 0.0], 100.0, 2.0, [1.0, 1e15])
    assert order.tolist() == [1, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_numbers_beyond_float64_are_a_named_value_error(impl) -> None:
    """A Python int beyond float64 raised OverflowError (not the documented TypeError or
    ValueError), and a long double beyond it silently became inf: a forbidden pair in a cost
    matrix, a weight of inf."""
    with pytest.raises(ValueError, match="meters_per_minute"):
        impl.travel_minutes([0.0], [0.0], [1.0], [1.0], 10**400)
    with pytest.raises(ValueError, match="start_x"):
        impl.best_drop_sequence(10**400, 0.0, [1.0], [1.0], 1.0, 1.0)
    with pytest.raises(ValueError, match="max_travel_min"):
        impl.pickup_times([0.0], [0.0], [0.0], [np.inf], [1.0], [1.0], [0.0], 1.0, 0.0, -10**400)
    big = np.longdouble("1e400")
    with pytest.raises(ValueError, match=re.escape("cost[0, 1]")):
        impl.linear_assignment(np.array([[1.0, big]], dtype=np.longdouble))
    with pytest.raises(ValueError, match=re.escape("site_weight[0]")):
        impl.demand_density([0.0], [0.0], [0.0], [0.0], np.array([big]), 1.0, 1.0)
