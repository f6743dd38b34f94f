"""How a load test's clients check an https (wss) server's certificate.

By default as any client does (the system's CAs, the host name); ``run.py --ca-file PEM`` trusts
that CA or self-signed certificate instead (a staging server's), ``--insecure`` checks nothing.
``run.py`` hands the choice to the locust users through :data:`CA_ENV` and :data:`INSECURE_ENV`.
"""
from __future__ import annotations

import os
import ssl
from typing import Mapping

CA_ENV = "LOADTEST_CA_FILE"
INSECURE_ENV = "LOADTEST_INSECURE"


def context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (default: the system's CAs), or checking nothing when
    ``insecure``; an OSError or ssl.SSLError for a CA file that cannot be read."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def env_for(ca_file: str | None, insecure: bool) -> dict[str, str]:
    """The environment that hands this choice to the locust users."""
    return {**({CA_ENV: os.path.abspath(ca_file)} if ca_file else {}), **({INSECURE_ENV: "1"} if insecure else {})}


def context_from_env(env: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """:func:`context` as :func:`env_for` set it."""
    return context(env.get(CA_ENV) or None, env.get(INSECURE_ENV) == "1")


def requests_verify(env: Mapping[str, str] = os.environ) -> str | bool:
    """The same choice as ``requests``' ``verify``: the CA file, False, or True."""
    return False if env.get(INSECURE_ENV) == "1" else env.get(CA_ENV) or True
