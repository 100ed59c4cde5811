"""A bounded store of what is built once and reused: statements, accepted documents.

Each store is shared by every request of a process and bounded: a client that makes
new shapes or documents without end only evicts, and what is evicted is built again
when next asked for. The least recently used goes first.
"""

from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")


class Kept(Generic[Key, Value]):
    """At most `size` values by key; the least recently used is dropped for a new one."""

    def __init__(self, size: int) -> None:
        self.size = size
        # In order of last use: the first is the least recently used.
        self._values: dict[Key, Value] = {}

    def get(self, key: Key) -> Value | None:
        value = self._values.pop(key, None)
        if value is not None:
            self._values[key] = value  # Now the most recently used.
        return value

    def keep(self, key: Key, value: Value) -> None:
        self._values.pop(key, None)
        if len(self._values) >= self.size:
            del self._values[next(iter(self._values))]
        self._values[key] = value

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
