from __future__ import annotations

import asyncio
import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Optional, Sequence, Union

from . import _native

if TYPE_CHECKING:
    from types import TracebackType

#: A JSON value as an event may hold it.
JSONValue = Union[None, bool, int, float, str, Sequence["JSONValue"], Mapping[str, "JSONValue"]]
#: An audit event (schema v1, docs/events.md): a mapping of field names to JSON
#: values. ``emit`` takes any ``Mapping[str, object]`` and checks the values at
#: run time, so that dicts built without annotations type-check too.
Event = Mapping[str, object]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Stats:
    """What an :class:`Emitter` has done since it was made (counts of events).

    ``queued`` events are in memory, not yet in the spool; ``spooled`` ones
    are on disk waiting for the ledger; ``acknowledged`` ones the ledger
    has logged. ``rejected`` events the ledger refused for good (kept in
    ``<spool_dir>/rejected.ndjson``), ``dropped`` ones were never queued or
    spooled (``on_full="drop"``, or a spool that refused a batch).
    ``body_bytes`` and ``wire_bytes`` are the request bodies sent to the
    ledger before and after compression (of requests that got an answer).
    """

    emitted: int
    queued: int
    spooled: int
    acknowledged: int
    rejected: int
    dropped: int
    retries: int
    duplicates: int
    pending_batches: int
    last_error: Optional[str]
    body_bytes: int = 0
    wire_bytes: int = 0


def _read_text(value: PathLike, what: str) -> str:
    try:
        with open(value, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {os.fspath(value)!r}: {e.strerror}") from None


def _signing_key_text(key: Optional[PathLike]) -> Optional[str]:
    if key is None:
        return None
    if isinstance(key, str) and key.strip().startswith("PRIVATE+KEY+"):
        return key.strip()
    return _read_text(key, "signing_key").strip()


def _ca_pem(ca: Union[PathLike, bytes, None]) -> Optional[bytes]:
    if ca is None:
        return None
    if isinstance(ca, bytes):
        return ca
    if isinstance(ca, str) and ca.lstrip().startswith("-----BEGIN"):
        return ca.encode()
    return _read_text(ca, "ca_cert").encode()


# Emitters of this process, so that a forked child can let go of them.
_live: "weakref.WeakSet[Emitter]" = weakref.WeakSet()
_live_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The parent's threads did not come along: the child's copies give up
    # their share of the spool lock and refuse further use.
    for em in list(_live):
        em._native.abandon_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Emitter:
    """Sends audit events to the ledger, durably and in order.

    ``emit`` validates an event, fills ``id`` (UUIDv7) and ``time`` when
    absent, and queues it; it never waits on the network. A background
    thread writes batches (``batch_size`` events, or every
    ``batch_interval`` seconds) to the spool with an fsync, and another
    delivers them to the ledger with retries, backoff and jitter, removing
    them from the spool only once the ledger acknowledged them.

    Thread-safe; usable from asyncio (:meth:`aflush`, :meth:`aclose`); a
    context manager (sync and async). After ``os.fork()`` the child's copy
    refuses use (:class:`EmitterClosed`): make a new one there, with its own
    ``spool_dir``.

    :param url: the ledger's (or a local ``aiaudit agent``'s) base URL.
    :param token: bearer token (a tenant ``emitter`` token).
    :param spool_dir: directory of the durable spool, created if missing.
        Without one, events wait in memory and die with the process.
    :param signing_key: an emitter key (the text ``PRIVATE+KEY+...`` or the
        path of the file ``aiaudit emitter keygen`` wrote): every batch is
        signed, and the ledger keeps the proof of origin.
    :param ca_cert: PEM certificate (path, text or bytes) to trust for ``https://``.
    :param on_full: ``"block"`` (default): ``emit`` waits while the queue is
        full (fail closed); ``"drop"``: it raises :class:`QueueFull` at once.
    :param max_spool_bytes: bound on the spool's disk use (default 1 GiB).
    :param compression: ``"auto"`` (default): zstd once the ledger says it
        decodes it (asked with ``OPTIONS`` before the first batch), else
        uncompressed; ``"zstd"``, ``"gzip"`` or ``"off"`` to choose.
    :param defaults: fields merged under every event (``tenant``, ``source``,
        ``actor``...); the event's own fields win.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        spool_dir: Optional[PathLike] = None,
        *,
        signing_key: Optional[PathLike] = None,
        signature_format: Literal["aiaudit-batch-v2", "aiaudit-batch-v1"] = "aiaudit-batch-v2",
        ca_cert: Union[PathLike, bytes, None] = None,
        on_full: Literal["block", "drop"] = "block",
        max_spool_bytes: int = 1 << 30,
        batch_size: int = 500,
        batch_interval: float = 0.2,
        queue_capacity: int = 100_000,
        max_backoff: float = 30.0,
        max_event_bytes: int = 16 << 20,
        compression: Literal["auto", "zstd", "gzip", "off"] = "auto",
        defaults: Optional[Event] = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url: an http:// or https:// URL, not {url!r}")
        if on_full not in ("block", "drop"):
            raise ValueError(f'on_full: "block" or "drop", not {on_full!r}')
        for name, value in (("max_spool_bytes", max_spool_bytes), ("batch_size", batch_size),
                            ("queue_capacity", queue_capacity), ("max_event_bytes", max_event_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: a positive integer, not {value!r}")
        self._defaults = dict(defaults) if defaults else None
        self._native = _native.NativeEmitter(
            url,
            token,
            os.fspath(spool_dir) if spool_dir is not None else None,
            _signing_key_text(signing_key),
            signature_format,
            _ca_pem(ca_cert),
            on_full,
            max_spool_bytes,
            batch_size,
            float(batch_interval),
            queue_capacity,
            float(max_backoff),
            max_event_bytes,
            compression,
        )
        with _live_lock:
            _live.add(self)
        if self._defaults is None:
            # The hot path without a Python frame in between (same behaviour).
            self.emit = self._native.emit  # type: ignore[method-assign]

    def emit(self, event: Event) -> str:
        """Validate and queue one event; return its ``id``.

        Raises :class:`InvalidEvent` (naming the field) for an event the
        ledger would refuse, :class:`QueueFull` with ``on_full="drop"`` when
        the queue is full, :class:`EmitterClosed` after :meth:`close`.
        The caller's mapping is not modified.
        """
        if self._defaults is not None:
            event = {**self._defaults, **event}
        return self._native.emit(event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds; True when everything emitted so
        far is acknowledged by the ledger (False: it stays spooled)."""
        return self._native.flush(float(timeout))

    def sync(self) -> bool:
        """Return once everything emitted so far is on disk in the spool
        (fsync'd): it survives a crash of this process. True when done."""
        return self._native.sync()

    async def aflush(self, timeout: float = 10.0) -> bool:
        """:meth:`flush` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._native.flush, float(timeout))

    def close(self, timeout: float = 5.0) -> bool:
        """Seal the queue into the spool, give delivery up to ``timeout``
        seconds, and stop. True when everything was delivered; what was
        not stays in the spool for the next Emitter on the same directory."""
        return self._native.close(float(timeout))

    async def aclose(self, timeout: float = 5.0) -> bool:
        """:meth:`close` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._native.close, float(timeout))

    @property
    def closed(self) -> bool:
        """True after :meth:`close`, and in a forked child."""
        return self._native.closed

    @property
    def last_error(self) -> Optional[str]:
        """Why the last delivery attempt failed (connection, TLS, HTTP 401,
        a refusal), or None once a later one succeeded."""
        return self._native.last_error()

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        (emitted, spooled_total, delivered, dropped, rejected, retries, duplicates, pending,
         body_bytes, wire_bytes) = self._native.counters()
        return Stats(
            emitted=emitted,
            queued=max(0, emitted - spooled_total - dropped),
            spooled=max(0, spooled_total - delivered - rejected),
            acknowledged=delivered,
            rejected=rejected,
            dropped=dropped,
            retries=retries,
            duplicates=duplicates,
            pending_batches=pending,
            last_error=self._native.last_error(),
            body_bytes=body_bytes,
            wire_bytes=wire_bytes,
        )

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional["TracebackType"],
    ) -> None:
        if not self.closed:
            self.close()

    async def __aenter__(self) -> "Emitter":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional["TracebackType"],
    ) -> None:
        if not self.closed:
            await self.aclose()
