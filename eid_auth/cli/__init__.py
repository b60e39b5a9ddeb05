"""The ``eid-auth`` command line: sign in once, print a fresh token on demand.

``eid-auth token`` and ``eid-auth header`` on a still-valid token take the
fast path (``_fast``), which imports neither click nor an HTTP library; every
other call goes to the click commands (``_commands``). Exit codes: ``_exit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``eid-auth`` with ``argv`` (default: the process's arguments).

    Example:
        >>> main(["token", "--profile", "work"])  # doctest: +SKIP
        eyJhbGciOi...
        0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    from ._fast import try_fast_path

    code = try_fast_path(args)
    if code is not None:
        return code
    try:
        from ._commands import app
    except ImportError as exc:
        name = getattr(exc, "name", None) or "a package"
        print(
            f"eid-auth: the command line needs {name}: pip install 'eid-auth[cli]'",
            file=sys.stderr,
        )
        return 1
    app.main(args, prog_name="eid-auth")
    return 0
