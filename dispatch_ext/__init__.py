"""The dispatch kernel: assignment, cost matrices and bundling.

The compiled Cython module is used when it was built (``pip install .``); otherwise the
pure-Python twin with the same API. ``IS_COMPILED`` says which is in use.
"""
from __future__ import annotations

try:  # the compiled kernel, built by setup.py
    from dispatch_ext import _kernel as _impl  # type: ignore[attr-defined]

    IS_COMPILED = True
except ImportError:  # pragma: no cover - exercised when the extension is not built
    from dispatch_ext import _pure as _impl  # type: ignore[no-redef]

    IS_COMPILED = False

__all__ = ["IS_COMPILED"]
