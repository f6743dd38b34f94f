"""The ``tracker`` command line. Subcommands live in :mod:`tracker.commands`.

Importing this module starts the command line: Ctrl-C, SIGTERM and SIGHUP are held (blocked)
from then until :func:`main` has loaded the commands (numpy, uvicorn, orjson, ...: a few tenths
of a second), then taken as Ctrl-C until the command installs its own. A signal arriving while
an extension module initialises could be lost, or crash it (orjson's has).
"""
from __future__ import annotations

from tracker.interrupts import ImportHold, interrupted_status, stop_signals_as_ctrl_c

_HELD = ImportHold()  # (released by main())

import argparse  # noqa: E402 - after the signals are held
import importlib  # noqa: E402
import sys  # noqa: E402

from tracker import __version__  # noqa: E402
from tracker.errors import ServerLost, SettingsError, StartupError  # noqa: E402

COMMANDS = [
    "tracker.commands.serve",
    "tracker.commands.token",
    "tracker.commands.replay",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracker", description="Real-time dispatch and tracking server for food delivery.")
    parser.add_argument("--version", action="version", version=f"tracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status. Bad settings, failed starts and a lost Redis are one
    line; Ctrl-C, even while the subcommands load, is exit 130 without a traceback (143 or 129 for a
    SIGTERM or SIGHUP, which stop a command as Ctrl-C does unless it handles them itself)."""
    try:
        with _HELD.holding() as release:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            if extra and not getattr(args, "take_extra", lambda args, extra: False)(args, extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            with stop_signals_as_ctrl_c():
                release()  # a signal held while the commands loaded is taken now
                return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    except (StartupError, ServerLost) as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupted_status()


if __name__ == "__main__":
    raise SystemExit(main())
