"""Children that stop with their parent, with nothing run in the forked child before exec.

Linux's PR_SET_PDEATHSIG sends a child a signal when the thread that started it dies, even by
kill -9, so a crashed server never leaves its Redis or its workers running. It used to be set by
a `preexec_fn`, which runs Python in the forked child of a many-threaded process: a lock another
thread held at the fork (the loader's, an allocator's) is never released there, and the child
hangs before exec (CI saw `Popen` wait 300 s on it). util-linux's `setpriv` (Debian's essential
util-linux) sets the signal and then execs the command, so the child keeps its pid and no Python
runs between fork and exec. Without `setpriv` the command runs as given, not tied.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

SETPRIV = shutil.which("setpriv")


def tied_to_parent(argv: Sequence[str], signal_name: str = "TERM") -> list[str]:
    """`argv` run so that it gets SIGTERM when the thread that starts it dies."""
    if SETPRIV is None:
        return list(argv)
    return [SETPRIV, "--pdeathsig", signal_name, "--", *argv]
