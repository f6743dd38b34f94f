"""Input arrays changed by another thread (or by the caller's own objects) during a call.

The compiled kernel reads its arrays without the GIL and without bounds checks, so it must
never read the caller's buffers: whatever a caller's thread writes into them while a call runs,
the call ends with a result or a Python exception. A crash kills the whole process, so each
scenario runs in a subprocess and the test looks at how it ended.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

IMPLS = [pytest.param("_kernel", id="compiled"), pytest.param("_pure", id="pure")]
ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_ended_cleanly(proc: subprocess.CompletedProcess) -> None:
    # A negative return code is a signal: the kernel read outside an array (SIGSEGV) or the
    # heap was corrupted (SIGABRT).
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "DONE" in proc.stdout


def test_cost_matrix_rewritten_with_nan_during_the_solve() -> None:
    """The reviewer's race: a thread writes NaN into the matrix while the compiled solver
    (GIL released) runs, at staggered moments from before validation to mid-solve."""
    proc = _run("""
        import threading, time
        import numpy as np
        from dispatch_ext import _kernel as K
        base = np.random.default_rng(1).random((900, 900))  # about 10 ms a solve
        for trial in range(12):
            c = base.copy()
            def poison():
                time.sleep(0.0005 + 0.001 * trial)
                c[:, :] = np.nan
            t = threading.Thread(target=poison)
            t.start()
            try:
                rows, cols = K.linear_assignment(c)
                assert len(set(cols.tolist())) == 900 and ((cols >= 0) & (cols < 900)).all()
            except ValueError:
                pass  # the NaN was there when the matrix was read: a clean refusal
            t.join()
        print("DONE")
    """)
    _assert_ended_cleanly(proc)


def test_site_of_order_rewritten_during_bundling() -> None:
    """The reviewer's second race: site indices far out of range written while the compiled
    greedy (GIL released) runs."""
    proc = _run("""
        import threading, time
        import numpy as np
        from dispatch_ext import _kernel as K
        S, per = 200, 120
        n = S * per
        rng = np.random.default_rng(0)
        ready, placed = np.zeros(n), np.zeros(n)
        dx, dy = rng.random(n) * 5000, rng.random(n) * 5000
        sx, sy = rng.random(S) * 5000, rng.random(S) * 5000
        for trial in range(3):
            site_of = np.repeat(np.arange(S, dtype=np.int64), per)
            def poison():
                time.sleep(0.01 + 0.02 * trial)
                site_of[:] = 1 << 40
                dx[:] = np.nan
            t = threading.Thread(target=poison)
            t.start()
            try:
                out = K.bundle_orders_by_site(site_of, ready, placed, dx, dy, sx, sy, 3, 6.0,
                                              0.0, 300.0, 4.0)
                assert sorted(np.concatenate(out).tolist()) == list(range(n))
            except ValueError:
                pass
            t.join()
            dx[:] = rng.random(n) * 5000
        print("DONE")
    """)
    _assert_ended_cleanly(proc)


@pytest.mark.parametrize("impl", IMPLS)
def test_inputs_changed_after_validation_do_not_reach_the_solver(impl) -> None:
    """Deterministic version of the races, for both implementations: a speed whose conversion
    to float rewrites the already validated arrays. The call must solve what was validated."""
    proc = _run(f"""
        import numpy as np
        from dispatch_ext import {impl} as K
        site_of = np.array([0, 1, 1, 0], dtype=np.int64)
        ready, placed = np.zeros(4), np.arange(4.0)
        dx, dy = np.array([100.0, 200.0, 300.0, 400.0]), np.zeros(4)
        sx, sy = np.array([0.0, 50.0]), np.zeros(2)
        weight = np.array([1.0, 2.0])

        class Speed(float):
            def __float__(self):
                site_of[:] = 1 << 40
                dx[:] = np.nan
                weight[:] = np.inf
                return 100.0

        clean = K.bundle_orders_by_site(site_of.copy(), ready, placed, dx.copy(), dy, sx, sy, 3,
                                        60.0, 30.0, 100.0, 4.0)
        got = K.bundle_orders_by_site(site_of, ready, placed, dx, dy, sx, sy, 3, 60.0, 30.0,
                                      Speed(100.0), 4.0)
        assert [b.tolist() for b in got] == [b.tolist() for b in clean], (got, clean)

        weight[:] = [1.0, 2.0]
        clean = K.demand_density([0.0], [0.0], sx, sy, weight.copy(), 100.0, 30.0)
        got = K.demand_density([0.0], [0.0], sx, sy, weight, Speed(100.0), 30.0)
        assert got.tolist() == clean.tolist(), (got, clean)
        print("DONE")
    """)
    _assert_ended_cleanly(proc)


def test_solver_core_refuses_nan_instead_of_reading_out_of_bounds() -> None:
    """Below the boundary: should NaN ever reach the compiled solver (the boundary's copy makes
    it unreachable through the public API), the solver raises instead of running past its
    column list."""
    proc = _run("""
        import numpy as np
        from dispatch_ext import _kernel as K
        for n, m in ((3, 3), (4, 9), (200, 200), (50, 300)):
            for fill in ("all", "row", "half"):
                c = np.random.default_rng(n + m).random((n, m))
                if fill == "all":
                    c[:] = np.nan
                elif fill == "row":
                    c[n // 2] = np.nan
                else:
                    c[:, : m // 2] = np.nan
                try:
                    K.CORE.solve_assignment(c)
                except RuntimeError:
                    pass
        print("DONE")
    """)
    _assert_ended_cleanly(proc)
