"""Tamper-evident audit trails for AI systems.

``aiaudit`` sends audit events (model calls, tool calls, agent decisions,
human reviews) to an AI Audit ledger. Events are validated against the
ledger's schema when you emit them, written to a durable spool on this
machine, and delivered in order, exactly once, whenever the ledger is
reachable: a process killed with ``kill -9`` or a ledger down for days loses
nothing that ``emit`` accepted and the spool made durable.

    from aiaudit import Emitter
    em = Emitter(url="http://127.0.0.1:7381", token=TOKEN, spool_dir="./aiaudit-spool")
    event_id = em.emit({"tenant": "acme", "source": {"name": "loan-assistant"},
                        "actor": {"id": "agent-7", "type": "agent"}, "action": "agent.decision"})
    em.flush(timeout=10.0)
    em.close()

The queue, batching, spool, signing and retries are the Rust SDK's
(``aiaudit-emitter``), compiled into this package: one implementation, one
spool format.
"""

from __future__ import annotations

from ._emitter import Emitter, Stats, JSONValue, Event
from ._native import (
    AuditError,
    EmitterClosed,
    InvalidEvent,
    QueueFull,
    SpoolFailure,
    generate_signing_key,
    uuid7,
)
from ._validate import validate_event
from .genai import audited, AuditedCall

__all__ = [
    "Emitter",
    "Stats",
    "Event",
    "JSONValue",
    "AuditError",
    "EmitterClosed",
    "InvalidEvent",
    "QueueFull",
    "SpoolFailure",
    "audited",
    "AuditedCall",
    "generate_signing_key",
    "uuid7",
    "validate_event",
]

__version__ = "0.1.0"
