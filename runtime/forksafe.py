"""Fork safety: what a forked child must not inherit half-held.

A child made by `os.fork` has one thread, but every lock that another thread of the parent
held at that moment stays held for ever in the child. Objects with locks (or thread pools,
whose threads do not exist in the child) register here, and the child gets fresh ones:

    renew_after_fork(self, _lock=threading.Lock, _pool=lambda: None)

sets `self._lock = threading.Lock()` and `self._pool = None` in every forked child, for as
long as `self` is alive. `hold_across_fork(lambda: lock)` makes a fork wait until no other
thread holds `lock`, and the forking thread holds it across the fork (the LLVM locks: LLVM's
own mutexes must not be held by a thread that does not exist in the child).
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Callable

# id(obj) -> (weak reference, attribute -> factory); entries go when their object does
_OBJECTS: dict[int, tuple[weakref.ref, dict[str, Callable[[], Any]]]] = {}
_HOOKS: list[Callable[[], None]] = []


def renew_after_fork(obj: object, **factories: Callable[[], Any]) -> None:
    """In a forked child, set each named attribute of `obj` to a fresh `factory()`."""
    key = id(obj)

    def forget(_: weakref.ref, key: int = key) -> None:
        _OBJECTS.pop(key, None)

    _OBJECTS[key] = (weakref.ref(obj, forget), dict(factories))


def after_fork(hook: Callable[[], None]) -> Callable[[], None]:
    """Run `hook()` in every forked child (module-level state: locks, process-wide caches)."""
    _HOOKS.append(hook)
    return hook


def hold_across_fork(*locks: Callable[[], Any]) -> None:
    """Before each fork take the locks `lock()` for `lock` in `locks`, in order (waiting for
    the threads that hold them), and release them after it, in the parent and in the child:
    the forking thread holds them, so no other thread was inside what they guard."""
    def take() -> None:
        for lock in locks:
            lock().acquire()

    def give() -> None:
        for lock in reversed(locks):
            lock().release()

    os.register_at_fork(before=take, after_in_parent=give, after_in_child=give)


def _renew_in_child() -> None:
    for ref, factories in list(_OBJECTS.values()):
        obj = ref()
        if obj is not None:
            for name, factory in factories.items():
                setattr(obj, name, factory())
    for hook in _HOOKS:
        hook()


os.register_at_fork(after_in_child=_renew_in_child)

__all__ = ["renew_after_fork", "after_fork", "hold_across_fork"]
