"""``tracker replay INSTANCE --live``: start a server (or check the one given), play the day
through it (:mod:`tracker.mdrp.live`), write the three solution files and check them.

Before the day starts the server must answer ``/healthz`` and accept an operator token signed
with the secret (``GET /v1/ops/snapshot``); any failure is one line on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import shlex
import sys
import time
import warnings
from pathlib import Path

import httpx
from jwt.warnings import InsecureKeyLengthWarning

from tracker.auth import issue_token, local_data_dir, local_secret, secret_path, weak_secret_warning
from tracker.commands.leftovers import GIVE_UP_AFTER, end_orders
from tracker.commands.replay import DEFAULT_INTERVAL_MIN, print_first, print_metrics
from tracker.interrupts import interrupted_status
from tracker.launcher import ServerProcess
from tracker.mdrp.checker import check_solution
from tracker.mdrp.instance import Instance, load_instance
from tracker.mdrp.live import LiveError, RunIds, day_span, describe_failure, error_message, play
from tracker.mdrp.solution import write_solution

DEFAULT_TIME_SCALE = 300.0
LEFTOVER_REASON = "replay ended"  # why a replay's unfinished orders are cancelled (or failed) on a server it was given


def check_server(base_url: str, secret: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """``/healthz`` of the server and its settings (as the ops snapshot gives them, ``{}`` from a
    server too old to), after checking that it answers and accepts our operator token."""
    try:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            resp = http.get("/healthz")
            try:
                health = resp.json()
                float(health["ts"]), float(health["time_scale"])
            except Exception:  # noqa: BLE001 - anything else is not a tracker server
                raise LiveError(f"{base_url} does not look like a tracker server: GET /healthz answered "
                                f"{resp.status_code} {resp.text[:80].strip()!r}") from None
            if not health["time_scale"] > 0:
                raise LiveError(f"the server at {base_url} reports time_scale {health['time_scale']!r}")
            token = issue_token(secret, "operator", "mdrp-platform", 600)
            auth = http.get("/v1/ops/snapshot", headers={"Authorization": "Bearer " + token})  # operators only
    except httpx.HTTPError as exc:
        raise LiveError(f"cannot reach the server at {base_url}: {describe_failure(exc)}") from None
    if auth.status_code in (401, 403):
        raise LiveError(f"the server at {base_url} refused our operator token ({error_message(auth)}): "
                        "give the server's TRACKER_SECRET (--secret, or TRACKER_SECRET in the environment), or, "
                        "for a server with a development secret, its data folder (TRACKER_DATA_DIR)")
    if auth.status_code != 200:
        raise LiveError(f"the server at {base_url} is not ready: GET /v1/ops/snapshot answered {auth.status_code} "
                        f"({error_message(auth)})")
    try:
        settings = auth.json().get("settings") or {}
    except ValueError:
        settings = {}
    return health, settings if isinstance(settings, dict) else {}


def unmatched_settings(server: dict, wanted: dict[str, str]) -> list[str]:  # type: ignore[type-arg]
    """``NAME=value`` for each setting ``wanted`` (:func:`matching_env`, the time scale aside) that
    the server runs with another value of: its figures would then not match the offline replay's."""
    differ = []
    for name, value in wanted.items():
        if name == "TRACKER_TIME_SCALE":
            continue
        has = server.get(name)
        if not isinstance(has, (int, float)) or abs(float(has) - float(value)) > 1e-9 * max(1.0, abs(float(value))):
            differ.append(f"{name}={has if has is not None else 'unknown'} (this day wants {float(value):g})")
    return differ


def matching_env(inst: Instance, time_scale: float, interval_min: float) -> dict[str, str]:
    """The settings that make a server play ``inst`` as the offline replay does (``--print-server-env``)."""
    p = inst.params
    return {
        "TRACKER_TIME_SCALE": str(time_scale),
        "TRACKER_DISPATCH_INTERVAL_S": str(interval_min * 60),
        "TRACKER_OFFER_TIMEOUT_S": "600", "TRACKER_STALE_AFTER_S": "7200", "TRACKER_SILENT_TAKE_BACK_S": "0",
        "TRACKER_RIDER_MAX_FIX_RATE": "1000", "TRACKER_MAX_RIDER_SPEED_MPS": "1000",
        "TRACKER_RIDER_SPEED_MPS": str(p.meters_per_minute / 60), "TRACKER_DISPATCH_RADIUS_M": "40000",
        "TRACKER_PICKUP_SERVICE_S": str(p.pickup_service * 60), "TRACKER_DROPOFF_SERVICE_S": str(p.dropoff_service * 60),
    }


def server_env(inst: Instance, time_scale: float, interval_min: float) -> dict[str, str]:
    """The environment of the server ``--live`` starts for ``inst``: :func:`matching_env`, logging warnings only."""
    return {**matching_env(inst, time_scale, interval_min), "TRACKER_LOG_LEVEL": "warning"}


def env_command(args: argparse.Namespace) -> str:
    """The ``tracker replay`` command that prints the environment a ``--server`` for this replay needs."""
    extra = "" if args.interval == DEFAULT_INTERVAL_MIN else f" --interval {args.interval:g}"
    if args.time_scale not in (None, DEFAULT_TIME_SCALE):
        extra = f" --time-scale {args.time_scale:g}{extra}"
    return f"tracker replay {shlex.quote(args.instance)} --print-server-env{extra}"


def end_leftovers(base_url: str, secret: str, ids: RunIds) -> None:
    """End the orders this run left unfinished on a server it was given (undelivered at the
    day's end, or in hand when the run stopped), so real riders are not offered them; one line
    on stderr says how many, and names what could not be ended."""
    try:
        httpx.get(base_url + "/healthz", timeout=5).raise_for_status()  # (not one timeout per order from a lost server)
        ending = end_orders(base_url, secret, ids.orders, LEFTOVER_REASON)
    except KeyboardInterrupt:
        print(f"tracker replay --live: interrupted while ending this run's orders; those left open on {base_url} "
              f"have ids starting {ids.prefix}", file=sys.stderr)
        return
    except httpx.HTTPError as exc:
        print(f"tracker replay --live: could not end this run's unfinished orders on {base_url} "
              f"({describe_failure(exc)}); their ids start {ids.prefix}", file=sys.stderr)
        return
    if ending.ended:
        how = ", ".join(f"{ending.outcomes[k]} {k}" for k in ("cancelled", "failed") if ending.outcomes[k])
        print(f"tracker replay --live: ended {ending.ended} {'order' if ending.ended == 1 else 'orders'} this run left "
              f"unfinished on {base_url} ({how}: \"{LEFTOVER_REASON}\")", file=sys.stderr)
    for error in ending.errors[:3]:
        print(f"tracker replay --live: could not end order {error}", file=sys.stderr)
    if ending.unresolved > min(3, len(ending.errors)):
        gave_up = f" (gave up after {GIVE_UP_AFTER} failures in a row)" if ending.outcomes["not tried"] else ""
        print(f"tracker replay --live: {ending.unresolved} of this run's orders may still be open on {base_url}{gave_up}; "
              f"their ids start {ids.prefix}", file=sys.stderr)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_live(args: argparse.Namespace) -> int:
    """The ``--live`` command: start a server unless ``--server``, play, write, check."""
    inst = load_instance(args.instance)
    out = Path(args.out)  # (the command chose and checked it)
    # A server of its own gets a fresh secret; one given with --server is signed for with --secret,
    # else the secret `tracker token` would use (TRACKER_SECRET, or the data folder's).
    secret = args.secret or (local_secret() if args.server else secrets.token_urlsafe(32))
    if not secret:
        print("tracker replay --live --server: give --secret (the server's TRACKER_SECRET): TRACKER_SECRET is "
              f"unset and there is no development secret in {secret_path(local_data_dir()).resolve()} "
              "(TRACKER_DATA_DIR names the server's data folder, default ./.tracker)", file=sys.stderr)
        return 2
    requested_scale = DEFAULT_TIME_SCALE if args.time_scale is None else args.time_scale
    short_key = weak_secret_warning(secret, "--secret")
    if short_key:  # PyJWT would warn at each token signed: say it once, our way, once the server took it
        warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    server = None
    if args.server:
        base_url = args.server.rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            print(f"tracker replay --live: --server must be an http:// or https:// URL, not {args.server!r}", file=sys.stderr)
            return 2
    else:
        server = ServerProcess(secret=secret, env=server_env(inst, requested_scale, args.interval),
                               port=args.port, port_flag="--port")
        base_url = server.base_url
    started = time.monotonic()
    ids: RunIds | None = None  # once the day starts
    try:
        try:
            if server is not None:
                try:
                    server.start()
                except RuntimeError as exc:
                    print(f"tracker replay --live: could not start a server: {exc}", file=sys.stderr)
                    return 1
            health, settings = check_server(base_url, secret)
            scale = float(health["time_scale"])
            if short_key:
                print(f"tracker replay: warning: {short_key}", file=sys.stderr)
            if args.server and args.time_scale is not None and args.time_scale != scale:
                # The server's clock sets the pace; playing at another than asked for would be a surprise
                # (a day meant for minutes taking hours): refuse, and say how to start a matching server.
                print(f"tracker replay --live: the server at {base_url} runs at x{scale:g}, not the "
                      f"--time-scale {args.time_scale:g} asked for; start it with the environment "
                      f"`{env_command(args)}` prints, or leave --time-scale out to play at its pace",
                      file=sys.stderr)
                return 2
            differ = unmatched_settings(settings, matching_env(inst, scale, args.interval)) if args.server else []
            if differ:  # its settings, not ours, decide the figures: say which differ and how to match them
                print(f"tracker replay: warning: {base_url} plays with settings of its own: {'; '.join(differ)}. To "
                      f"match the offline replay, start it with the environment `{env_command(args)}` prints",
                      file=sys.stderr)
            first, last = day_span(inst)
            takes = (last - first) * 60 / scale
            if scale <= 1 or takes > 3600:
                print(f"tracker replay: warning: the server runs at time scale {scale:g}, so this day takes about "
                      f"{_duration(takes)} of real time; `tracker serve --time-scale {DEFAULT_TIME_SCALE:g}` "
                      f"would play it in about {_duration((last - first) * 60 / DEFAULT_TIME_SCALE)}", file=sys.stderr)
            where = base_url if args.server else f"a server of its own at {base_url}"
            ids = RunIds()
            print(f"playing {inst.name} live through {where} at x{scale:g}: minutes {first:.0f} to {last:.0f} of the "
                  f"day, about {_duration(takes)}; on the server its ids start {ids.prefix}; progress every simulated "
                  f"hour; solution to {out}",
                  file=sys.stderr, flush=True)
            day, errors = asyncio.run(play(inst, base_url, secret, progress=True, ids=ids))
        except LiveError as exc:
            print(f"tracker replay --live: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("tracker replay --live: interrupted; no solution written", file=sys.stderr)
            return interrupted_status()
    finally:
        if server is not None:
            server.cleanup()
        elif ids is not None:  # someone's server, which real riders may use: leave none of our orders open
            end_leftovers(base_url, secret, ids)
    write_solution(day, out)
    report = check_solution(args.instance, out)
    m = report.metrics
    assert m is not None
    print_metrics(f"{inst.name} (live, x{scale:g}, {time.monotonic() - started:.0f} s)", m.as_dict())
    print_first([f"client: {e}" for e in errors], 10, " client errors")
    print(f"solution written to {out}; checker: {'OK' if report.ok else f'{len(report.violations)} violations'}")
    print_first([f"rule {v.rule}: {v.message}" for v in report.violations], 10,
                f": tracker replay --check {args.instance} {out}")
    return 0 if report.ok and not math.isnan(m.ctd_mean) else 1
