"""Process-wide defaults of the command line: OpenMP's wait policy and glibc's heap top pad.

OpenMP reads its settings once, when the runtime library is loaded (with torch), so they are set
in the environment here, first thing in ``cli.main`` and ``python -m fastgcn_denoise``; the
package's ``__init__`` does not import torch, so nothing has loaded it by then. A value the user
set in the environment always wins: only unset variables get a default. Library use (``import
fastgcn_denoise`` in a script) changes nothing.

``OMP_WAIT_POLICY=PASSIVE``: an idle OpenMP thread sleeps at once instead of spinning first
(GNU OpenMP's default spins up to 300,000 rounds). With the default, when another process holds a
core, our threads spin on the cores that process needs, and training slowed 3-4x (issue 10
item 16); ``bench/studies/wait_policy.py`` measures both policies at 1 and 2 threads, on a quiet machine
and beside a busy process (``bench/results/wait_policy_shared_cpu.json``, summarised in the README).

Heap top pad (glibc only, ``keep_heap``): a training step allocates and frees tens of MB of
temporaries ([N, d] layers, their gradients, SimGCL's [2N, d] views). By default glibc serves a
block above its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps it when freed, and
trims the heap's free top beyond twice that threshold: either way the memory goes back to the OS
and every page is faulted in anew at the next step. On Gowalla (1 thread) a LightGCN step took
10,000-14,000 minor page faults and 60-78 ms, a SimGCL step 28,500-30,300 and 183-190 ms.
``mallopt(M_TOP_PAD, 1 GiB)`` (and one growth of the heap right away) keeps 1 GiB mapped above
the heap's top, which then serves the large blocks too: 220-570 faults and 41-48 ms, 0-440 and
119-125 ms (brk calls in the run 920 -> 9; peak resident memory 860 -> 880-900 MB). Smaller pads
are worse than none (64 MiB: 38,000 faults and 115 ms a LightGCN step): any malloc setting turns
off glibc's adaptive mmap threshold, and a pad smaller than a step's temporaries leaves them to
mmap. The pad is address space, resident only once used; ``tests/test_runtime.py`` checks the
faults. A malloc setting of the user's (any ``MALLOC_*_`` variable, or ``glibc.malloc`` in
``GLIBC_TUNABLES``) wins: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
HEAP_TOP_PAD = 1 << 30  # bytes glibc keeps mapped above its heap's top (module docstring)
_M_TOP_PAD = -2  # mallopt's parameter number in glibc's malloc.h
_GROW_BLOCK = 96 << 10  # below glibc's default mmap threshold
_heap_kept = None  # the pad this process set, once set


def _user_tuned_malloc(environ) -> bool:
    """Whether ``environ`` holds a glibc malloc setting of the user's."""
    if any(k.startswith("MALLOC_") and k.endswith("_") and v for k, v in environ.items()):
        return True
    return "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")


def keep_heap(environ=os.environ, pad: int = HEAP_TOP_PAD) -> bool:
    """``mallopt(M_TOP_PAD, pad)`` on glibc unless the user tuned malloc (module docstring);
    returns whether it was set. Anything else (another C library, no ``mallopt``): False."""
    global _heap_kept
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if _user_tuned_malloc(environ):
        return False
    if _heap_kept == pad:  # the command line may run more than once in a process (tests)
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not libc.mallopt(_M_TOP_PAD, ctypes.c_int(int(pad))):
            return False
        libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
        libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
        libc.sbrk.argtypes = [ctypes.c_ssize_t]
    except (OSError, AttributeError):
        return False
    # Grow the heap once now: until it grows, a block above the mmap threshold (128 KiB) that the
    # heap's top cannot hold is still mmapped, and unmapped (and refaulted) again. Blocks below
    # the threshold come from the top until it must grow, by the block plus the pad; freed, they
    # merge into a top of about ``pad`` bytes, which the trim then keeps.
    start, blocks = libc.sbrk(0), []
    while libc.sbrk(0) - start < pad // 2 and len(blocks) < 4096:
        block = libc.malloc(_GROW_BLOCK)
        if not block:
            break
        blocks.append(block)
    for block in blocks:
        libc.free(block)
    _heap_kept = pad
    return True


def configure(environ=os.environ) -> dict:
    """Set every unset (or empty) variable of ``DEFAULTS`` in ``environ`` and the heap top pad
    (``keep_heap``); returns what was set: those variables, and "malloc_top_pad" (bytes)."""
    applied = {}
    for name, value in DEFAULTS.items():
        if not environ.get(name):
            environ[name] = applied[name] = value
    if keep_heap(environ):
        applied["malloc_top_pad"] = HEAP_TOP_PAD
    return applied
