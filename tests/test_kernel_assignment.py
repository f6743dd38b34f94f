"""linear_assignment: optimal like scipy, forbidden pairs like brute force, both kernels."""
from __future__ import annotations

import itertools
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import dispatch_ext
from dispatch_ext import _kernel, _pure

IMPLS = [pytest.param(_kernel, id="compiled"), pytest.param(_pure, id="pure")]


def _check_against_scipy(impl, cost: np.ndarray) -> None:
    rows, cols = impl.linear_assignment(cost)
    ref_rows, ref_cols = linear_sum_assignment(cost)
    assert rows.dtype == np.int64 and cols.dtype == np.int64
    assert len(rows) == min(cost.shape)
    assert np.all(np.diff(rows) > 0), "rows ascending and distinct"
    assert len(set(cols.tolist())) == len(cols), "each column used once"
    got, best = cost[rows, cols].sum(), cost[ref_rows, ref_cols].sum()
    assert got == pytest.approx(best, rel=1e-9, abs=1e-9), (cost, rows, cols)


def _random_shape(rng: np.random.Generator, largest: int) -> tuple[int, int]:
    return int(rng.integers(0, largest + 1)), int(rng.integers(0, largest + 1))


@pytest.mark.parametrize("impl", IMPLS)
def test_random_rectangular_matrices_match_scipy_optimum(impl) -> None:
    rng = np.random.default_rng(1)
    for _ in range(1500):
        n, m = _random_shape(rng, 9)
        _check_against_scipy(impl, rng.normal(0, 100, size=(n, m)))


@pytest.mark.parametrize("impl", IMPLS)
def test_tied_integer_costs_match_scipy_optimum(impl) -> None:
    rng = np.random.default_rng(2)
    for _ in range(1500):
        n, m = _random_shape(rng, 10)
        high = int(rng.integers(1, 4))
        _check_against_scipy(impl, rng.integers(0, high, size=(n, m)).astype(float))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1), (1, 7), (7, 1), (6, 6)])
def test_degenerate_matrices(impl, shape) -> None:
    for value in (0.0, 3.5, -2.0):
        _check_against_scipy(impl, np.full(shape, value))


@pytest.mark.parametrize("impl", IMPLS)
def test_larger_matrices_match_scipy_optimum(impl) -> None:
    rng = np.random.default_rng(3)
    sizes = [(60, 60), (40, 90), (90, 40), (80, 80)]
    for n, m in sizes:
        _check_against_scipy(impl, rng.random((n, m)))
        _check_against_scipy(impl, rng.integers(0, 5, size=(n, m)).astype(float))


def test_compiled_kernel_matches_scipy_on_big_matrices() -> None:
    rng = np.random.default_rng(4)
    for n, m in [(400, 400), (150, 700), (700, 150)]:
        _check_against_scipy(_kernel, rng.random((n, m)))
        _check_against_scipy(_kernel, rng.integers(0, 20, size=(n, m)).astype(float))
        _check_against_scipy(_kernel, rng.random((n, m)) * 1e6 + 1e9)


@pytest.mark.parametrize("impl", IMPLS)
def test_integer_input_is_converted(impl) -> None:
    rows, cols = impl.linear_assignment([[4, 1, 3], [2, 0, 5], [3, 2, 2]])
    assert rows.tolist() == [0, 1, 2]
    assert np.array([[4, 1, 3], [2, 0, 5], [3, 2, 2]])[rows, cols].sum() == 5


# ------------------------------------------------------------------------ forbidden pairs


def _brute_force(cost: np.ndarray) -> tuple[int, float]:
    """(largest number of finite pairs, least cost among matchings of that size)."""
    n, m = cost.shape
    best = (0, 0.0)
    options = [None, *range(m)]
    for choice in itertools.product(options, repeat=n):
        used = [j for j in choice if j is not None]
        if len(used) != len(set(used)):
            continue
        pairs = [(i, j) for i, j in enumerate(choice) if j is not None]
        if any(np.isinf(cost[i, j]) for i, j in pairs):
            continue
        total = float(sum(cost[i, j] for i, j in pairs))
        if len(pairs) > best[0] or (len(pairs) == best[0] and total < best[1]):
            best = (len(pairs), total)
    return best


@pytest.mark.parametrize("impl", IMPLS)
def test_forbidden_pairs_maximum_cardinality_then_least_cost(impl) -> None:
    rng = np.random.default_rng(5)
    for trial in range(700):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        cost = rng.integers(0, 10, size=(n, m)).astype(float) if trial % 2 else \
            rng.normal(0, 50, size=(n, m))
        cost[rng.random((n, m)) < rng.uniform(0.2, 0.9)] = np.inf
        rows, cols = impl.linear_assignment(cost)
        assert not np.isinf(cost[rows, cols]).any(), "a forbidden pair was used"
        assert len(set(cols.tolist())) == len(cols) and np.all(np.diff(rows) > 0)
        cardinality, total = _brute_force(cost)
        assert len(rows) == cardinality, cost
        assert cost[rows, cols].sum() == pytest.approx(total, abs=1e-9), cost


def test_cardinality_beats_cost() -> None:
    # Matching row 0 to its cheap column would leave row 1 with nothing.
    cost = np.array([[1.0, 100.0], [0.0, np.inf]])
    for impl in (_kernel, _pure):
        rows, cols = impl.linear_assignment(cost)
        assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_all_forbidden_gives_empty_assignment(impl) -> None:
    rows, cols = impl.linear_assignment(np.full((3, 4), np.inf))
    assert rows.tolist() == [] and cols.tolist() == []


@pytest.mark.parametrize("impl", IMPLS)
def test_forbidden_pairs_with_finite_penalty_matrix_agree_with_scipy(impl) -> None:
    """With a few forbidden pairs and a full assignment still possible, the optimum is
    scipy's optimum of the matrix (scipy handles inf natively when feasible)."""
    rng = np.random.default_rng(6)
    for _ in range(300):
        n, m = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        cost = rng.random((n, m)) * 10
        cost[rng.random((n, m)) < 0.15] = np.inf
        try:
            ref_rows, ref_cols = linear_sum_assignment(cost)
        except ValueError:  # scipy: infeasible, no complete assignment exists
            continue
        rows, cols = impl.linear_assignment(cost)
        assert len(rows) == min(n, m)
        assert cost[rows, cols].sum() == pytest.approx(cost[ref_rows, ref_cols].sum(), abs=1e-9)


def _exact_brute_force(cost: np.ndarray) -> tuple[int, Fraction]:
    """(largest number of finite pairs, least exact total among those); exact sums, because at
    1e17 a float sum cannot tell 0 from 1."""
    n, m = cost.shape
    best: tuple[int, Fraction] = (0, Fraction(0))
    small, large = (n, m) if n <= m else (m, n)
    for chosen in itertools.permutations(range(large), small):
        pairs = [(i, j) if n <= m else (j, i) for i, j in enumerate(chosen)]
        pairs = [(i, j) for i, j in pairs if np.isfinite(cost[i, j])]
        total = sum((Fraction(float(cost[i, j])) for i, j in pairs), Fraction(0))
        if len(pairs) > best[0] or (len(pairs) == best[0] and total < best[1]):
            best = (len(pairs), total)
    return best


@pytest.mark.parametrize("impl", IMPLS)
def test_forbidden_pairs_next_to_a_huge_cost_stay_optimal(impl) -> None:
    """A +inf entry and a cost of -1e17 in one matrix: the forbidden pairs' penalty must not
    cost the small entries their precision (the boundary used to shift every entry by -1e17,
    which made 0 and 1 equal and gave (1, 2), (2, 1) here), and must stay above huge finite
    costs."""
    cost = np.array([[-1e17, np.inf, np.inf], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    rows, cols = impl.linear_assignment(cost)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (2, 2)]
    rng = np.random.default_rng(11)
    for trial in range(300):
        # As above: a huge negative cost alone in its row and column, small whole costs with
        # forbidden pairs elsewhere; or only huge costs next to the forbidden ones (the penalty
        # must stay above them). Not a huge cost that augmenting paths or penalty pairs add
        # up with small ones: no float solver tells 1e17 + 4 from 1e17 + 8 (scipy neither).
        n, m = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        cost = rng.integers(0, 10, size=(n, m)).astype(float)
        cost[rng.random((n, m)) < 0.3] = np.inf
        huge = 10.0 ** rng.integers(16, 19)
        if trial % 3:
            i, j = rng.integers(n), rng.integers(m)
            cost[i, :] = np.inf
            cost[:, j] = np.inf
            cost[i, j] = -huge
        else:
            cost[np.isfinite(cost)] = -huge if trial % 2 else huge
        cardinality, total = _exact_brute_force(cost)
        if trial % 3 and cardinality < min(n, m):
            continue  # penalty pairs in the optimum: see above
        rows, cols = impl.linear_assignment(cost)
        assert not np.isinf(cost[rows, cols]).any(), cost
        got = sum((Fraction(float(cost[i, j])) for i, j in zip(rows, cols)), Fraction(0))
        assert (len(rows), got) == (cardinality, total), cost


@pytest.mark.parametrize("impl", IMPLS)
def test_huge_magnitudes_stay_optimal(impl) -> None:
    cost = np.array([[1e305, 2e305, np.inf], [3e305, 1e305, 5e305], [-1e306, 4e305, 2e305]])
    rows, cols = impl.linear_assignment(cost)
    assert (rows.tolist(), cols.tolist()) == ([0, 1, 2], [1, 2, 0])
    assert _brute_force(cost) == (3, pytest.approx(cost[rows, cols].sum()))


# ----------------------------------------------------------------------- compiled & pure


def test_compiled_and_pure_agree_on_totals() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n, m = _random_shape(rng, 12)
        cost = rng.integers(0, 6, size=(n, m)).astype(float)
        cost[rng.random((n, m)) < 0.3] = np.inf
        a_rows, a_cols = _kernel.linear_assignment(cost)
        b_rows, b_cols = _pure.linear_assignment(cost)
        assert len(a_rows) == len(b_rows)
        assert cost[a_rows, a_cols].sum() == cost[b_rows, b_cols].sum()


def test_installed_package_uses_the_compiled_kernel() -> None:
    assert dispatch_ext.IS_COMPILED is True
    assert dispatch_ext.linear_assignment is _kernel.linear_assignment


def test_solve_releases_the_gil() -> None:
    """Another Python thread keeps running while a large solve is in progress."""
    cost = np.random.default_rng(8).random((1200, 1200))
    done = threading.Event()
    elapsed: list[float] = []

    def solve() -> None:
        start = time.perf_counter()
        _kernel.linear_assignment(cost)
        elapsed.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=solve)
    worker.start()
    ticks = [time.perf_counter()]
    while not done.is_set():
        sum(range(200))  # pure-Python work that needs the GIL
        ticks.append(time.perf_counter())
    worker.join()
    longest_gap = max(np.diff(ticks)) if len(ticks) > 1 else elapsed[0]
    assert elapsed[0] > 0.02, "the solve should be long enough to observe"
    assert longest_gap < elapsed[0] / 2, (longest_gap, elapsed[0])
