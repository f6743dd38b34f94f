"""``tracker serve``: run the HTTP/WebSocket server."""
from __future__ import annotations

import argparse

from tracker import logs
from tracker.server import serve
from tracker.settings import Settings, describe


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command and its flags to ``sub``."""
    p = sub.add_parser("serve", help="run the server (embedded Redis when REDIS_URL is unset)",
                       description="Run the HTTP/WebSocket server. Flags override their environment variables.",
                       epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="address to listen on (TRACKER_HOST, default 127.0.0.1)")
    p.add_argument("--port", help="TCP port (TRACKER_PORT, default 8000; 0 picks a free one)")
    p.add_argument("--redis-url", help="Redis URL (REDIS_URL); unset starts an embedded Redis")
    p.add_argument("--data-dir", help="data folder for the embedded Redis (TRACKER_DATA_DIR, default ./.tracker)")
    p.add_argument("--time-scale", help="run the server clock K times faster (TRACKER_TIME_SCALE, default 1)")
    p.add_argument("--log-level", help="debug, info, warning or error (TRACKER_LOG_LEVEL)")
    p.add_argument("--log-format", help="json or text (TRACKER_LOG_FORMAT)")
    p.set_defaults(func=run)


def _settings_epilog() -> str:
    """Every setting: its environment variable, default and meaning (docs/architecture.md, "Settings")."""
    lines = ["settings (environment variables, default in brackets):"]
    for env, default, doc in describe():
        lines.append(f"  {env} [{default}]\n      {doc}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the server on the settings of the environment and the flags until it stops; returns 0."""
    settings = Settings.from_env(
        host=args.host, port=args.port, redis_url=args.redis_url, data_dir=args.data_dir,
        time_scale=args.time_scale, log_level=args.log_level, log_format=args.log_format,
    )
    logs.configure(settings.log_level, settings.log_format)
    serve(settings)
    return 0
