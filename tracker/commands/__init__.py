"""``tracker`` subcommands: each module has ``register(subparsers)`` that sets ``func``."""
