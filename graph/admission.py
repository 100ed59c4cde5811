"""Which requests a process takes on now, and which it turns away at once.

Turning a request away immediately, with a status that says why and when to retry, is
kinder to every client than taking it on and failing it after a long wait for a
database connection:

- beyond `max_concurrent_requests` in one process: 503 with Retry-After (the server is
  busy; any client may retry);
- beyond `max_concurrent_requests_per_business` of one business (16, below the pool's
  20): 429 with Retry-After, so that one business cannot take every database connection
  from the others;
- beyond `max_large_requests` bodies larger than `large_request_bytes` at once: 503,
  since each such body costs many times its size in memory while it is parsed and
  checked, and ten 8 MiB batches at once took a process past a gigabyte;
- an address that sent `failed_key_limit` keys never issued within `failed_key_window`:
  429 with Retry-After, without looking the key up, so that keys cannot be guessed at
  the speed of the database (a revoked key sent again is no guess, and not counted).

Counters only, no waiting: the event loop runs one task at a time, so they need no lock.
Each process counts for itself; with `--workers N` the bounds are N times as large for
the whole server (README, "Running in production").
"""

import ipaddress
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from db.settings import Settings

# How long a client is told to wait before retrying a request turned away for load.
BUSY_RETRY_AFTER_SECONDS = 1
# Addresses whose failed keys are remembered at once; the least recent are forgotten.
REMEMBERED_ADDRESSES = 10_000


class TurnedAway(Exception):
    def __init__(self, status_code: int, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


OVERLOADED = "SERVER_OVERLOADED"
TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
TOO_MANY_FAILED_KEYS = "TOO_MANY_FAILED_AUTHENTICATIONS"


class InFlight:
    """Admission.request's count of requests in progress, held for a `with` block. This and
    BusinessInFlight are classes rather than generator context managers, which cost every
    request 3 % of a point read's instructions between them."""

    __slots__ = ("_admission",)

    def __init__(self, admission: "Admission") -> None:
        self._admission = admission

    def __enter__(self) -> None:
        self._admission.in_flight += 1

    def __exit__(self, *_exception: object) -> None:
        self._admission.in_flight -= 1


class BusinessInFlight:
    """Admission.business_request's count of the business's requests in progress."""

    __slots__ = ("_admission", "_business_id")

    def __init__(self, admission: "Admission", business_id: str) -> None:
        self._admission = admission
        self._business_id = business_id

    def __enter__(self) -> None:
        self._admission.by_business[self._business_id] += 1

    def __exit__(self, *_exception: object) -> None:
        by_business = self._admission.by_business
        by_business[self._business_id] -= 1
        if not by_business[self._business_id]:
            del by_business[self._business_id]


class Admission:
    """The bounds of one process (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.in_flight = 0
        self.large_in_flight = 0
        self.by_business: Counter[str] = Counter()
        self.failed_keys = FailedKeyLimiter(
            settings.failed_key_limit, settings.failed_key_window.total_seconds()
        )

    def request(self) -> "InFlight":
        """A request in progress, for a `with` block; 503 beyond the process's limit."""
        if self.in_flight >= self.settings.max_concurrent_requests:
            raise TurnedAway(
                503,
                OVERLOADED,
                f"The server is serving {self.settings.max_concurrent_requests} requests "
                "already (USAGE_EVENTS_MAX_CONCURRENT_REQUESTS); retry shortly.",
                BUSY_RETRY_AFTER_SECONDS,
            )
        return InFlight(self)

    @contextmanager
    def large_request(self) -> Iterator[None]:
        if self.large_in_flight >= self.settings.max_large_requests:
            raise TurnedAway(
                503,
                OVERLOADED,
                f"The server is reading {self.settings.max_large_requests} request bodies "
                f"larger than {self.settings.large_request_bytes} bytes already "
                "(USAGE_EVENTS_MAX_LARGE_REQUESTS); retry shortly.",
                BUSY_RETRY_AFTER_SECONDS,
            )
        self.large_in_flight += 1
        try:
            yield
        finally:
            self.large_in_flight -= 1

    def business_request(self, business_id: str) -> "BusinessInFlight":
        """A request of the business in progress, for a `with` block; 429 beyond its limit."""
        limit = self.settings.max_concurrent_requests_per_business
        if self.by_business[business_id] >= limit:
            raise TurnedAway(
                429,
                TOO_MANY_REQUESTS,
                f"This business has {limit} requests in progress already "
                "(USAGE_EVENTS_MAX_CONCURRENT_REQUESTS_PER_BUSINESS); retry when one ends.",
                BUSY_RETRY_AFTER_SECONDS,
            )
        return BusinessInFlight(self, business_id)

    @contextmanager
    def key_check(self, address: str) -> Iterator["KeyCheck"]:
        """A key check from `address`: refused if it failed too many lately; the block sets
        `guess` once the key is looked up, and a guess (a key never issued) counts as a
        failure.

        From an address with failures already, a check counts as one before its lookup,
        taken back if the key is good: guesses sent at once would otherwise all pass the
        check before the first one failed. An address without any is not held up so, and
        its requests at once each just check their key.
        """
        self.check_address(address)
        pending = self.failed_keys.record(address) if self.failed_keys.has(address) else None
        check = KeyCheck()
        try:
            yield check
        except BaseException:
            if pending is not None:  # An outage is not a failed guess.
                self.failed_keys.forget(address, pending)
            raise
        if not check.guess and pending is not None:
            self.failed_keys.forget(address, pending)
        elif check.guess and pending is None:
            self.failed_keys.record(address)

    def check_address(self, address: str) -> None:
        """Refuse a key check from an address that failed too many of them lately."""
        wait = self.failed_keys.wait_for(address)
        if wait is not None:
            raise TurnedAway(
                429,
                TOO_MANY_FAILED_KEYS,
                f"Too many unknown API keys from this address: at most "
                f"{self.failed_keys.limit} per {self.failed_keys.window:g} s "
                "(USAGE_EVENTS_FAILED_KEY_LIMIT, USAGE_EVENTS_FAILED_KEY_WINDOW).",
                wait,
            )


class KeyCheck:
    """Whether the key checked was a guess (never issued): set by `Admission.key_check`'s
    block once the key is looked up."""

    guess = False


class FailedKeyLimiter:
    """At most `limit` failed key checks per address in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_for(self, address: str) -> int | None:
        """Seconds until `address` may try a key again; None if it may now."""
        if not self.failures:
            return None  # No address has failed a check (that is remembered): nothing to parse.
        failures = self.failures.get(client_of(address))
        if failures is None or len(failures) < self.limit:
            return None
        wait = failures[0] + self.window - time.monotonic()
        return math.ceil(wait) if wait > 0 else None

    def record(self, address: str) -> float:
        """A failure now; returns its time, by which `forget` takes it back."""
        client = client_of(address)
        failures = self.failures.pop(client, None) or deque(maxlen=self.limit)
        now = time.monotonic()
        failures.append(now)
        self.failures[client] = failures  # Now the most recent.
        while len(self.failures) > REMEMBERED_ADDRESSES:
            self.failures.popitem(last=False)
        return now

    def forget(self, address: str, when: float) -> None:
        failures = self.failures.get(client_of(address))
        if failures is not None and when in failures:
            failures.remove(when)

    def has(self, address: str) -> bool:
        """Whether `address` failed a key check within the window."""
        failures = self.failures.get(client_of(address))
        return (
            failures is not None
            and bool(failures)
            and failures[-1] + self.window > time.monotonic()
        )


def client_of(address: str) -> str:
    """Who an address stands for: itself, or for IPv6 its /64, which one client holds whole
    (counting each of its addresses apart would give it 2**64 tries)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
