from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from . import _native


def validate_event(event: Mapping[str, object], *, max_event_bytes: int = 16 << 20) -> Dict[str, Any]:
    """Check ``event`` as the ledger will and return it completed.

    ``id`` (a UUIDv7) and ``time`` (now, UTC) are filled in when absent.
    Raises :class:`aiaudit.InvalidEvent` naming the first bad field (its
    ``errors`` attribute lists every ``(field, problem)``).
    """
    result: Dict[str, Any] = json.loads(_native.validate_event(event, max_event_bytes))
    return result
