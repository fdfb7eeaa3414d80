"""Per-process state (open files, decoder threads, caches) that a forked child must not share with its parent.

`ProcessLocal` holds one value per process: the first use in a new process (a forked DataLoader worker)
builds a fresh value. The parent's value is kept referenced in the child, neither used nor closed, so
finalizers never close the parent's file handles from the child and its copy-on-write pages are left alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Serializes the switch to a new process when several threads notice the new pid at once. A lock inherited
# through fork may be held by a thread that does not exist in the child, so each child gets a new one.
_switch_lock = threading.Lock()


# Guards the first build of the process-wide defaults (heavy cache, parquet handles, frame fetcher): a
# Mixture opens its datasets in threads, and two threads building one default would give two budgets.
_singleton_lock = threading.RLock()


def _new_switch_lock() -> None:
    global _switch_lock, _singleton_lock
    _switch_lock = threading.Lock()
    _singleton_lock = threading.RLock()


def singleton_lock() -> threading.RLock:
    """The lock under which a process-wide default object is built once (double-checked by its getter)."""
    return _singleton_lock


os.register_at_fork(after_in_child=_new_switch_lock)


class ProcessLocal(Generic[T]):
    """A value built by `factory()` on first use in each process. Not picklable by design:
    owners pickle their settings and build a new `ProcessLocal` on the other side."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._value: T | None = None
        self._pid: int | None = None  # the process that built `_value`; None until first use
        self._inherited: list[T] = []

    def get(self) -> T:
        """This process's value, built on first use here."""
        if self._pid != os.getpid():
            with _switch_lock:
                if self._pid != os.getpid():
                    if self._value is not None:
                        self._inherited.append(self._value)
                    self._value = self._factory()
                    self._pid = os.getpid()
        return self._value  # type: ignore[return-value]

    def mine(self) -> T | None:
        """The value if this process built it, else None (to close only what this process opened)."""
        return self._value if self._pid == os.getpid() else None

    def __getstate__(self):
        raise TypeError("ProcessLocal state does not cross process boundaries; pickle the owner's settings")
