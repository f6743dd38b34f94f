"""``tracker token``: print a signed token for a role and subject.

It signs with the server's secret: ``TRACKER_SECRET``, else the development secret that
``tracker serve`` keeps in its data folder. It never makes a secret up: a token signed with
a key the server does not know would only be refused later.
"""
from __future__ import annotations

import argparse
import sys

from tracker.auth import Role, issue_token, read_secret, secret_path, weak_secret_warning
from tracker.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``token`` command and its flags to ``sub``."""
    p = sub.add_parser("token", help="print a signed token (uses TRACKER_SECRET or the data folder's secret)")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--sub", required=True, help="rider id, order id (customer), merchant id, or operator name")
    p.add_argument("--ttl", type=float, default=24 * 3600, help="lifetime in seconds (default 86400)")
    p.add_argument("--data-dir", help="the server's data folder, holding its development secret (TRACKER_DATA_DIR, default ./.tracker)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a token for ``--role``/``--sub`` signed with the server's secret; 2 when there is no
    secret or the sub or ttl is refused."""
    settings = Settings.from_env(data_dir=args.data_dir)
    secret = settings.secret or read_secret(settings.data_dir)
    if secret is None:
        where = secret_path(settings.data_dir).resolve()
        print(f"tracker token: no secret to sign with: TRACKER_SECRET is unset and {where} does not exist; "
              "run it in the folder where `tracker serve` runs, pass the server's --data-dir, "
              "or set TRACKER_SECRET to the server's secret", file=sys.stderr)
        return 2
    if settings.secret and (weak := weak_secret_warning(settings.secret)) is not None:
        print(f"tracker token: warning: {weak}", file=sys.stderr)
    try:
        token = issue_token(secret, args.role, args.sub, args.ttl)
    except ValueError as exc:
        print(f"tracker token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
