"""Memory policy of the long-lived process (the bot, the sandbox), applied by the process owner once
its big structures — the lookup index — are built."""

from __future__ import annotations

import contextlib
import ctypes
import gc


def settle(*, collect: bool = True) -> None:
    """Hand the heap memory the start-up freed back to the operating system (glibc only; best effort),
    then keep the cyclic garbage collector from walking the millions of objects that live as long as the
    process (a full pass over the index took 0.3 s at 100k customers). `collect=False` while the bot is
    already answering: no full collection first (it holds the interpreter that long)."""
    if collect:
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back this way
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    gc.freeze()
