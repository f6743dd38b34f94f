"""The ``tracker`` command line. Subcommands live in :mod:`tracker.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

from tracker import __version__
from tracker.errors import ServerLost, SettingsError, StartupError
from tracker.interrupts import interrupted_status

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
    SIGTERM or SIGHUP a command takes as Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
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
