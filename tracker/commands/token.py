"""``tracker token``: print a signed token for a role and subject."""
from __future__ import annotations

import argparse
import sys

from tracker.auth import Role, issue_token, load_or_create_secret
from tracker.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="print a signed token (uses TRACKER_SECRET or the data folder's secret)")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--sub", required=True, help="rider id, order id (customer), merchant id, or operator name")
    p.add_argument("--ttl", type=float, default=24 * 3600, help="lifetime in seconds (default 86400)")
    p.add_argument("--data-dir", help="data folder holding the development secret (default ./.tracker)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=args.data_dir)
    secret = load_or_create_secret(settings.secret, settings.data_dir)
    try:
        token = issue_token(secret, args.role, args.sub, args.ttl)
    except ValueError as exc:
        print(f"tracker token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
