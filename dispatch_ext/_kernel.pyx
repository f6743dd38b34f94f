# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, nonecheck=False
"""Compiled dispatch kernel: the core loops behind ``dispatch_ext``'s public API.

Bounds checks are off in this module: every array reaching a core function was validated
and converted by ``_boundary`` (shapes, dtype float64/int64, C-contiguous, finite values)
and is the boundary's own copy, so no other thread can change it while the loops run
without the GIL on typed memoryviews. The assignment solver still checks the few indices
that only a non-finite cost could corrupt, and raises rather than read outside its arrays.
"""
from types import SimpleNamespace

import numpy as np

from libc.math cimport INFINITY, ceil, ldexp, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from dispatch_ext import _api

cdef enum:
    MAX_STOPS = 6  # the longest drop-off sequence searched exhaustively


# ----------------------------------------------------------------------------- assignment
#
# Jonker & Volgenant (1987) for an n x m matrix with n <= m, column duals ``v`` only.
# Invariant throughout: every assigned row i has its column x[i] at a minimum of
# c[i, :] - v (so u[i] = c[i, x[i]] - v[x[i]] makes all reduced costs >= 0 and assigned
# ones 0), and when n < m every unassigned column keeps v = 0 while assigned ones have
# v <= 0 (the dual of the rectangular problem). Any phase may stop early and leave rows
# free: the Dijkstra augmentation finishes from whatever the invariant holds for.


cdef int64_t _column_reduction(const double[:, ::1] c, int64_t[::1] x, int64_t[::1] y,
                               double[::1] v, int64_t[::1] free_rows, int64_t[::1] matches,
                               int64_t[::1] argmin) noexcept nogil:
    """Square only: v = column minima, assign each column's minimum row when still free,
    then move slack to the rows matched once (reduction transfer). Returns #free rows."""
    cdef Py_ssize_t n = c.shape[0], i, j, j1
    cdef int64_t nfree = 0
    cdef double h, best
    for j in range(n):  # row-major scan for column minima (cache friendly)
        v[j] = c[0, j]
        argmin[j] = 0
    for i in range(1, n):
        for j in range(n):
            if c[i, j] < v[j]:
                v[j] = c[i, j]
                argmin[j] = i
    for j in range(n - 1, -1, -1):
        i = argmin[j]
        matches[i] += 1
        if matches[i] == 1:
            x[i] = j
            y[j] = i
        elif v[j] < v[x[i]]:
            j1 = x[i]
            x[i] = j
            y[j] = i
            y[j1] = -1
        else:
            y[j] = -1
    for i in range(n):
        if matches[i] == 0:
            free_rows[nfree] = i
            nfree += 1
        elif matches[i] == 1 and n > 1:
            j1 = x[i]
            best = INFINITY
            for j in range(n):
                if j != j1:
                    h = c[i, j] - v[j]
                    if h < best:
                        best = h
            v[j1] -= best
    return nfree


cdef int64_t _augmenting_row_reduction(const double[:, ::1] c, int64_t[::1] x,
                                       int64_t[::1] y, double[::1] v, int64_t[::1] free_rows,
                                       int64_t nfree, int64_t budget) noexcept nogil:
    """One auction-like pass over the free rows; returns the rows still free, or -1 if the
    costs were not finite (see the guard below).

    A free row takes its cheapest column j1 and lowers v[j1] until the row is indifferent
    to its second cheapest; a displaced owner is retried at once (while ``budget`` lasts,
    which bounds price wars) or, on a tie, left for the next pass / the augmentation."""
    cdef Py_ssize_t m = c.shape[1], j
    cdef int64_t k = 0, previous = nfree, i, i0, j1, j2
    cdef double u1, u2, h
    nfree = 0
    while k < previous:
        i = free_rows[k]
        k += 1
        u1 = c[i, 0] - v[0]
        j1 = 0
        u2 = INFINITY
        j2 = -1
        for j in range(1, m):
            h = c[i, j] - v[j]
            if h < u2:
                if h >= u1:
                    u2 = h
                    j2 = j
                else:
                    u2 = u1
                    u1 = h
                    j2 = j1
                    j1 = j
        i0 = y[j1]
        if u1 < u2:
            v[j1] -= u2 - u1
        elif i0 >= 0:
            if j2 < 0:  # no second column below +inf: only NaN costs get here (m >= 2)
                return -1
            j1 = j2
            i0 = y[j2]
        x[i] = j1
        y[j1] = i
        if i0 >= 0:
            x[i0] = -1
            if u1 < u2 and budget > 0:
                budget -= 1
                k -= 1
                free_rows[k] = i0
            else:
                free_rows[nfree] = i0
                nfree += 1
    return nfree


cdef bint _augment(const double[:, ::1] c, int64_t[::1] x, int64_t[::1] y, double[::1] v,
                   int64_t free_row, double[::1] d, int64_t[::1] pred,
                   int64_t[::1] collist) noexcept nogil:
    """Dijkstra from ``free_row`` over reduced costs to the nearest free column, then
    update the duals of the settled columns and flip the augmenting path.

    Returns False, having read nothing out of bounds, if the state is impossible: every
    column settled without reaching a free one, or a path longer than the rows. With n <= m
    and finite costs neither happens (a free column always exists); with NaN costs the
    comparisons stop meaning anything, and without these checks the loop would read
    ``collist[m]`` and beyond."""
    cdef Py_ssize_t m = c.shape[1], n = c.shape[0], k
    cdef int64_t j, j1, i, low = 0, up = 0, last = 0, sink = -1, steps = 0
    cdef double lowest = 0.0, h, u1
    for j in range(m):
        collist[j] = j
        d[j] = c[free_row, j] - v[j]
        pred[j] = free_row
    while sink < 0:
        if up == low:  # settle the next batch of columns at the minimum distance
            if low >= m:
                return False
            last = low
            lowest = d[collist[up]]
            up += 1
            for k in range(up, m):
                j = collist[k]
                h = d[j]
                if h <= lowest:
                    if h < lowest:
                        up = low
                        lowest = h
                    collist[k] = collist[up]
                    collist[up] = j
                    up += 1
            for k in range(low, up):
                if y[collist[k]] < 0:
                    sink = collist[k]
                    break
            if sink >= 0:
                break
        j1 = collist[low]  # scan the row assigned to a settled column
        low += 1
        i = y[j1]
        if i < 0 or i >= n:
            return False
        u1 = c[i, j1] - v[j1] - lowest
        for k in range(up, m):
            j = collist[k]
            h = c[i, j] - v[j] - u1
            if h < d[j]:
                pred[j] = i
                if h <= lowest:
                    if y[j] < 0:
                        sink = j
                        break
                    collist[k] = collist[up]
                    collist[up] = j
                    up += 1
                d[j] = h
    for k in range(last):
        j = collist[k]
        v[j] += d[j] - lowest
    while True:
        i = pred[sink]
        steps += 1
        if i < 0 or i >= n or steps > n:
            return False
        y[sink] = i
        j = x[i]
        x[i] = sink
        sink = j
        if i == free_row:
            break
        if sink < 0 or sink >= m:
            return False
    return True


def _solve_assignment(const double[:, ::1] c):
    """Optimal ``col_of_row`` for a finite n x m matrix with 1 <= n <= m."""
    cdef Py_ssize_t n = c.shape[0], m = c.shape[1], k
    x_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] x = x_arr
    cdef int64_t[::1] y = np.full(m, -1, dtype=np.int64)
    cdef double[::1] v = np.zeros(m)
    cdef double[::1] d = np.empty(m)
    cdef int64_t[::1] free_rows = np.arange(n, dtype=np.int64)
    cdef int64_t[::1] pred = np.empty(m, dtype=np.int64)
    cdef int64_t[::1] collist = np.empty(m, dtype=np.int64)
    cdef int64_t[::1] matches = np.zeros(n, dtype=np.int64)
    cdef int64_t nfree = n, budget = 8 * n + 64
    cdef bint ok = True
    with nogil:
        if n == m:
            nfree = _column_reduction(c, x, y, v, free_rows, matches, pred)
        for k in range(2):
            if nfree > 0:
                nfree = _augmenting_row_reduction(c, x, y, v, free_rows, nfree, budget)
        ok = nfree >= 0
        if ok:
            for k in range(nfree):
                if not _augment(c, x, y, v, free_rows[k], d, pred, collist):
                    ok = False
                    break
    if not ok:
        # Unreachable from the public API (the boundary hands over a finite copy); kept so a
        # broken invariant is an exception, not a read outside the arrays.
        raise RuntimeError("assignment solver reached an impossible state: the cost matrix "
                           "must be finite")
    return x_arr


# --------------------------------------------------------------------------- travel/pickup


cdef inline double _minutes(double ax, double ay, double bx, double by,
                            double speed) noexcept nogil:
    cdef double dx = ax - bx, dy = ay - by
    return ceil(sqrt(dx * dx + dy * dy) / speed)


def _travel(const double[::1] ax, const double[::1] ay, const double[::1] bx,
            const double[::1] by, double speed):
    cdef Py_ssize_t p = ax.shape[0], q = bx.shape[0], i, j
    out_arr = np.empty((p, q))
    cdef double[:, ::1] out = out_arr
    with nogil:
        for i in range(p):
            for j in range(q):
                out[i, j] = _minutes(ax[i], ay[i], bx[j], by[j], speed)
    return out_arr


# exp of the kernel's own for demand_density: the C library picks its exp by CPU when it loads
# (glibc: one with FMA instructions, one without), and the two differ in the last bit for some
# arguments, which can turn a near tie in a replay. These are the same IEEE-754 operations on
# every CPU (setup.py builds with -ffp-contract=off, so no a * b + c becomes an FMA), and the
# twin (_pure._exp) performs them in the same order. Cody-Waite reduction x = k ln2 + r with
# |r| <= ln2 / 2 (LN2_HI has 21 trailing zero bits: k * LN2_HI is exact for |k| <= 1100), then
# exp(r) by its Taylor polynomial to degree 13 (Horner form from 1/13! down to 1/2, then
# 1 + (r + r**2 * that)), then 2**k: within 1 ulp of exp (0.94 ulp at most over 4 million
# arguments against mpmath; the C library's is within 0.51, and 90% of ours are the same).

cdef inline double _exp(double x) noexcept nogil:
    """exp(x) for x <= 0 (the density's -minutes / tau); 0.0 below -746, where exp(x) < 2**-1075."""
    cdef double k, r, p, scale
    cdef uint64_t bits
    if not x >= -746.0:  # (never NaN here: the boundary keeps every input finite)
        return 0.0
    # x / ln2 rounded half to even, as nearbyint does (and np.rint in the twin) but without a call:
    # adding and taking away 1.5 * 2**52 leaves the nearest integer of any |y| < 2**51
    k = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10  # LN2_HI, LN2_LO
    p = 1.6059043836821613e-10  # 1/13!
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    p = 1.0 + (r + (r * r) * p)  # 1 + r + r**2 (1/2 + r/6 + ...): the last two steps added apart
    if k < -1021.0:  # p * 2**k subnormal: rounded once, as ldexp rounds it
        return ldexp(p, <int>k)
    bits = <uint64_t>(<int64_t>k + 1023) << 52  # 2**k, a normal double: p * 2**k is exact, = ldexp
    memcpy(&scale, &bits, 8)
    return p * scale


def _density(d):
    cdef const double[::1] rx = d.rider.x, ry = d.rider.y
    cdef const double[::1] sx = d.site.x, sy = d.site.y, w = d.site_weight
    cdef double speed = d.meters_per_minute, tau = d.tau_min, dx, dy, acc
    cdef Py_ssize_t r = rx.shape[0], s = sx.shape[0], i, j
    out_arr = np.empty(r)
    cdef double[::1] out = out_arr
    with nogil:
        for i in range(r):
            acc = 0.0
            for j in range(s):
                dx = rx[i] - sx[j]
                dy = ry[i] - sy[j]
                acc += _exp(-(sqrt(dx * dx + dy * dy) / speed) / tau) * w[j]
            out[i] = acc
    return out_arr


def _pickup(p):
    cdef const double[::1] rx = p.rider.x, ry = p.rider.y
    cdef const double[::1] free_at = p.rider_free_at, shift_end = p.rider_shift_end
    cdef const double[::1] sx = p.site.x, sy = p.site.y, ready = p.site_ready_at
    cdef double speed = p.meters_per_minute, half = p.half_pickup_service
    cdef double max_travel = p.max_travel_min, t, arrive
    cdef Py_ssize_t nr = rx.shape[0], ns = sx.shape[0], r, s
    out_arr = np.empty((nr, ns))
    cdef double[:, ::1] out = out_arr
    with nogil:
        for r in range(nr):
            for s in range(ns):
                t = _minutes(rx[r], ry[r], sx[s], sy[s], speed)
                arrive = (free_at[r] + t) + half
                arrive = ready[s] if ready[s] > arrive else arrive
                if t > max_travel or arrive > shift_end[r]:
                    arrive = INFINITY
                out[r, s] = arrive
    return out_arr


def _costs(c):
    p = c.pickup
    cdef const double[::1] rx = p.rider.x, ry = p.rider.y
    cdef const double[::1] free_at = p.rider_free_at, shift_end = p.rider_shift_end
    cdef const double[::1] sx = p.site.x, sy = p.site.y, ready = p.site_ready_at
    cdef const double[::1] size = c.bundle_size, base = c.bundle_base
    cdef double speed = p.meters_per_minute, half = p.half_pickup_service
    cdef double max_travel = p.max_travel_min, weight = c.wait_weight, t, arrive, pick
    cdef Py_ssize_t nr = rx.shape[0], ns = sx.shape[0], r, s
    out_arr = np.empty((nr, ns))
    cdef double[:, ::1] out = out_arr
    with nogil:
        for r in range(nr):
            for s in range(ns):
                t = _minutes(rx[r], ry[r], sx[s], sy[s], speed)
                arrive = (free_at[r] + t) + half
                pick = ready[s] if ready[s] > arrive else arrive
                if t > max_travel or pick > shift_end[r]:
                    out[r, s] = INFINITY
                else:
                    out[r, s] = ((pick + half) * size[s] + base[s]) + weight * (pick - arrive)
    return out_arr


# ------------------------------------------------------------------------- drop sequences


cdef bint _next_permutation(int64_t* a, int64_t k) noexcept nogil:
    """Advance ``a`` to the next lexicographic permutation; False after the last one."""
    cdef int64_t i = k - 2, j, t
    while i >= 0 and a[i] >= a[i + 1]:
        i -= 1
    if i < 0:
        return False
    j = k - 1
    while a[j] <= a[i]:
        j -= 1
    t = a[i]; a[i] = a[j]; a[j] = t
    i += 1
    j = k - 1
    while i < j:
        t = a[i]; a[i] = a[j]; a[j] = t
        i += 1
        j -= 1
    return True


cdef double _best_sequence(double* legs, int64_t k, double service, const double* weights,
                           int64_t* best_perm, double* best_offsets) noexcept nogil:
    """Exhaustive search over the k! orders (lexicographic, first minimum wins).

    ``legs`` is (k+1) x (k+1) row-major: point 0 is the start, point 1 + s stop s.
    Returns the minimal objective; fills ``best_perm``/``best_offsets``."""
    cdef int64_t perm[MAX_STOPS]
    cdef double offsets[MAX_STOPS]
    cdef double half = service / 2.0, clock, objective, best = INFINITY, offset
    cdef int64_t s, here, stop
    cdef bint first = True
    for s in range(k):
        perm[s] = s
    while True:
        clock = 0.0
        objective = 0.0
        here = 0
        for s in range(k):
            stop = perm[s]
            clock += legs[here * (k + 1) + 1 + stop]
            offset = clock + half
            clock = offset + half
            offsets[s] = offset
            objective += weights[stop] * offset
            here = 1 + stop
        if objective < best or first:
            first = False
            best = objective
            for s in range(k):
                best_perm[s] = perm[s]
                best_offsets[s] = offsets[s]
        if not _next_permutation(perm, k):
            break
    return best


cdef void _legs(double sx, double sy, const double* xs, const double* ys, int64_t k,
                double speed, double* legs) noexcept nogil:
    cdef double px[MAX_STOPS + 1]
    cdef double py[MAX_STOPS + 1]
    cdef int64_t a, b
    px[0] = sx
    py[0] = sy
    for a in range(k):
        px[1 + a] = xs[a]
        py[1 + a] = ys[a]
    for a in range(k + 1):
        for b in range(k + 1):
            legs[a * (k + 1) + b] = _minutes(px[a], py[a], px[b], py[b], speed)


def _drop_sequence(d):
    cdef const double[::1] xs = d.drop.x, ys = d.drop.y, w = d.weights
    cdef int64_t k = xs.shape[0]
    cdef double legs[(MAX_STOPS + 1) * (MAX_STOPS + 1)]
    order_arr = np.zeros(k, dtype=np.int64)
    offsets_arr = np.zeros(k)
    cdef int64_t[::1] order = order_arr
    cdef double[::1] offsets = offsets_arr
    cdef double sx = d.start_x, sy = d.start_y, speed = d.meters_per_minute
    cdef double service = d.dropoff_service_min
    if k > 0:
        with nogil:
            _legs(sx, sy, &xs[0], &ys[0], k, speed, legs)
            _best_sequence(legs, k, service, &w[0], &order[0], &offsets[0])
    return order_arr, offsets_arr


# ------------------------------------------------------------------------------- bundling


cdef int64_t _bundle_site(const int64_t* group, int64_t g, double sx, double sy,
                          const double[::1] ready_at, const double[::1] dx,
                          const double[::1] dy, int64_t max_size, double max_spread,
                          double max_extra, double speed, double service,
                          int64_t[::1] members, int64_t[::1] size, double[::1] lo,
                          double[::1] hi, double[::1] total, double[::1] finish,
                          double[::1] alone) noexcept nogil:
    """Greedy insertion (rule in ``bundle_orders``) for one site's sorted orders.

    Bundle b's members are ``members[b * MAX_STOPS : b * MAX_STOPS + size[b]]`` in delivery
    sequence. Returns the number of bundles."""
    cdef int64_t nb = 0, t, o, b, s, q, k, best
    cdef int64_t cand[MAX_STOPS]
    cdef int64_t perm[MAX_STOPS]
    cdef int64_t best_seq[MAX_STOPS]
    cdef double cx[MAX_STOPS]
    cdef double cy[MAX_STOPS]
    cdef double offsets[MAX_STOPS]
    cdef double weights[MAX_STOPS]
    cdef double legs[(MAX_STOPS + 1) * (MAX_STOPS + 1)]
    cdef double half = service / 2.0, ready, new_lo, new_hi, total_offset, cost, best_cost
    cdef double new_total, new_finish, best_lo = 0, best_hi = 0, best_total = 0, best_finish = 0
    cdef bint feasible
    for s in range(MAX_STOPS):
        weights[s] = 1.0
    for t in range(g):
        o = group[t]
        alone[o] = ready_at[o] + (_minutes(sx, sy, dx[o], dy[o], speed) + half)
    for t in range(g):
        o = group[t]
        ready = ready_at[o]
        best = -1
        best_cost = INFINITY
        for b in range(nb):
            if size[b] >= max_size:
                continue
            new_lo = lo[b] if lo[b] < ready else ready
            new_hi = hi[b] if hi[b] > ready else ready
            if new_hi - new_lo > max_spread:
                continue
            k = size[b] + 1
            for s in range(k - 1):
                cand[s] = members[b * MAX_STOPS + s]
            cand[k - 1] = o
            for s in range(k):
                cx[s] = dx[cand[s]]
                cy[s] = dy[cand[s]]
            _legs(sx, sy, cx, cy, k, speed, legs)
            total_offset = _best_sequence(legs, k, service, weights, perm, offsets)
            feasible = True
            for s in range(k):
                q = cand[perm[s]]
                if (new_hi + offsets[s]) - alone[q] > max_extra:
                    feasible = False
                    break
            if not feasible:
                continue
            new_total = new_hi * k + total_offset
            new_finish = new_hi + offsets[k - 1]
            cost = (new_total - total[b] - alone[o]) + (new_finish - finish[b])
            if cost < best_cost:
                best_cost = cost
                best = b
                best_lo = new_lo
                best_hi = new_hi
                best_total = new_total
                best_finish = new_finish
                for s in range(k):
                    best_seq[s] = cand[perm[s]]
        if best < 0:
            members[nb * MAX_STOPS] = o
            size[nb] = 1
            lo[nb] = ready
            hi[nb] = ready
            total[nb] = alone[o]
            finish[nb] = alone[o]
            nb += 1
        else:
            size[best] += 1
            for s in range(size[best]):
                members[best * MAX_STOPS + s] = best_seq[s]
            lo[best] = best_lo
            hi[best] = best_hi
            total[best] = best_total
            finish[best] = best_finish
    return nb


def _bundle(p):
    cdef const int64_t[::1] order = p.order, group_start = p.group_start
    cdef const int64_t[::1] group_site = p.group_site
    cdef const double[::1] ready = p.ready_at, dx = p.drop.x, dy = p.drop.y
    cdef const double[::1] sx = p.site.x, sy = p.site.y
    cdef int64_t n = order.shape[0], ngroups = group_start.shape[0] - 1, g, b, s, nb
    cdef int64_t out_len = 0, nbundles = 0, site
    cdef int64_t max_size = p.max_size
    cdef double max_spread = p.max_ready_spread, max_extra = p.max_extra_min
    cdef double speed = p.meters_per_minute, service = p.dropoff_service_min
    cdef int64_t[::1] slots = np.empty(max(n, 1) * MAX_STOPS, dtype=np.int64)
    cdef int64_t[::1] size = np.empty(max(n, 1), dtype=np.int64)
    cdef double[::1] lo = np.empty(max(n, 1)), hi = np.empty(max(n, 1))
    cdef double[::1] total = np.empty(max(n, 1)), finish = np.empty(max(n, 1))
    cdef double[::1] alone = np.empty(max(n, 1))
    members_arr = np.empty(n, dtype=np.int64)
    starts_arr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] members = members_arr, starts = starts_arr
    with nogil:
        for g in range(ngroups):
            site = group_site[g]
            nb = _bundle_site(&order[group_start[g]], group_start[g + 1] - group_start[g],
                              sx[site], sy[site],
                              ready, dx, dy, max_size, max_spread, max_extra, speed, service,
                              slots, size, lo, hi, total, finish, alone)
            for b in range(nb):
                for s in range(size[b]):
                    members[out_len] = slots[b * MAX_STOPS + s]
                    out_len += 1
                nbundles += 1
                starts[nbundles] = out_len
    return members_arr, starts_arr[:nbundles + 1]


CORE = SimpleNamespace(solve_assignment=_solve_assignment, travel=_travel, pickup=_pickup, density=_density,
                       costs=_costs, drop_sequence=_drop_sequence, bundle=_bundle)
_PUBLIC = _api.bind_all(CORE)
linear_assignment = _PUBLIC["linear_assignment"]
travel_minutes = _PUBLIC["travel_minutes"]
pickup_times = _PUBLIC["pickup_times"]
assignment_costs = _PUBLIC["assignment_costs"]
demand_density = _PUBLIC["demand_density"]
best_drop_sequence = _PUBLIC["best_drop_sequence"]
bundle_orders = _PUBLIC["bundle_orders"]
bundle_orders_by_site = _PUBLIC["bundle_orders_by_site"]

__all__ = list(_PUBLIC)
