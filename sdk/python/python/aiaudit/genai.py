"""Auditing model calls: :func:`audited`, vendor-neutral.

Records one event per call with its timing, outcome, error and the
OpenTelemetry GenAI attributes (``gen_ai.*``, semantic conventions 1.37:
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.operation.name``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.response.id``,
``gen_ai.response.finish_reasons``). They come from what you pass, and from
the call's result when it has the OpenAI-compatible response shape many
vendors share (``model``, ``id``, ``usage.prompt_tokens`` /
``usage.completion_tokens`` or ``usage.input_tokens`` / ``usage.output_tokens``,
``choices[].finish_reason`` or ``stop_reason``), as an object or a dict.
"""

from __future__ import annotations

import functools
import inspect
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, TypeVar, cast

if TYPE_CHECKING:
    from types import TracebackType

    from ._emitter import Emitter, JSONValue

F = TypeVar("F", bound=Callable[..., Any])


def _get(obj: object, name: str) -> object:
    """``obj.name`` or ``obj[name]``, else None."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: object) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def response_attributes(response: object) -> Dict[str, "JSONValue"]:
    """The ``gen_ai.*`` attributes readable from an OpenAI-compatible response."""
    out: Dict[str, "JSONValue"] = {}
    model = _get(response, "model")
    if isinstance(model, str):
        out["gen_ai.response.model"] = model
    rid = _get(response, "id")
    if isinstance(rid, str):
        out["gen_ai.response.id"] = rid
    usage = _get(response, "usage")
    if usage is not None:
        for attr, names in (
            ("gen_ai.usage.input_tokens", ("input_tokens", "prompt_tokens")),
            ("gen_ai.usage.output_tokens", ("output_tokens", "completion_tokens")),
        ):
            for name in names:
                n = _count(_get(usage, name))
                if n is not None:
                    out[attr] = n
                    break
    reasons: List["JSONValue"] = []
    choices = _get(response, "choices")
    if isinstance(choices, (list, tuple)):
        for choice in choices:
            reason = _get(choice, "finish_reason")
            if isinstance(reason, str):
                reasons.append(reason)
    stop = _get(response, "stop_reason")
    if isinstance(stop, str):
        reasons.append(stop)
    if reasons:
        out["gen_ai.response.finish_reasons"] = reasons
    return out


class AuditedCall:
    """One audited call: a context manager (sync or async) and a decorator.

    Inside the block, :meth:`record_response` takes the call's result and
    :meth:`set` adds ``gen_ai.*`` values (or event fields such as
    ``subject``, ``output``). On exit one event is emitted: ``outcome``
    ``success``, or ``failure`` with the exception's type and message (the
    exception still propagates). Emitting never raises into your code for
    a delivery problem; an event the schema refuses raises
    :class:`aiaudit.InvalidEvent` (a programming error).
    """

    def __init__(self, emitter: "Emitter", action: str, fields: Dict[str, "JSONValue"],
                 ai: Dict[str, "JSONValue"], attributes: Dict[str, "JSONValue"]) -> None:
        self._emitter = emitter
        self._action = action
        self._fields = fields
        self._ai = ai
        self._attributes = attributes
        self._start_wall = 0.0
        self._start = 0.0
        self.event_id: Optional[str] = None

    def set(self, **values: "JSONValue") -> None:
        """Set ``gen_ai.*`` attributes (``provider``, ``model``, ``operation``,
        ``input_tokens``, ``output_tokens`` as short names, or full dotted
        names passed through ``**{"gen_ai.x": v}``) and event fields."""
        for key, value in values.items():
            if key in _SHORT:
                self._ai[_SHORT[key]] = value
            elif key.startswith("gen_ai."):
                self._ai[key] = value
            else:
                self._fields[key] = value

    def record_response(self, response: object) -> None:
        """Take ``gen_ai.*`` values from an OpenAI-compatible response."""
        for key, value in response_attributes(response).items():
            self._ai.setdefault(key, value)

    def __enter__(self) -> "AuditedCall":
        self._start_wall = time.time()
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                 tb: Optional["TracebackType"]) -> None:
        self._finish(exc)

    async def __aenter__(self) -> "AuditedCall":
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[type], exc: Optional[BaseException],
                        tb: Optional["TracebackType"]) -> None:
        self._finish(exc)

    def _finish(self, exc: Optional[BaseException]) -> None:
        elapsed_ms = round((time.perf_counter() - self._start) * 1000.0, 3)
        event: Dict[str, "JSONValue"] = dict(self._fields)
        event["action"] = self._action
        event["time"] = datetime.fromtimestamp(self._start_wall, tz=timezone.utc).isoformat(
            timespec="microseconds").replace("+00:00", "Z")
        if exc is None:
            event.setdefault("outcome", {"status": "success"})
        else:
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            event["outcome"] = {"status": "failure", "reason": reason}
        if self._ai:
            event["ai"] = dict(self._ai)
        attributes = dict(self._attributes)
        attributes["duration_ms"] = elapsed_ms
        if exc is not None:
            attributes["error.type"] = type(exc).__qualname__
        event["attributes"] = attributes
        self.event_id = self._emitter.emit(event)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: each call of ``fn`` is audited, and its
        return value read with :meth:`record_response`."""
        template = self

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = template._fresh()
                async with call:
                    result = await fn(*args, **kwargs)
                    call.record_response(result)
                    return result
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = template._fresh()
            with call:
                result = fn(*args, **kwargs)
                call.record_response(result)
                return result
        return cast(F, wrapper)

    def _fresh(self) -> "AuditedCall":
        return AuditedCall(self._emitter, self._action, dict(self._fields), dict(self._ai),
                           dict(self._attributes))


_SHORT = {
    "provider": "gen_ai.provider.name",
    "model": "gen_ai.request.model",
    "operation": "gen_ai.operation.name",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "conversation_id": "gen_ai.conversation.id",
}


def audited(
    emitter: "Emitter",
    action: str = "model.invoke",
    *,
    provider: Optional[str] = None,
    model: Optional[str] = None,
    operation: Optional[str] = None,
    tenant: Optional[str] = None,
    source: Optional[Mapping[str, "JSONValue"]] = None,
    actor: Optional[Mapping[str, "JSONValue"]] = None,
    subject: Optional[str] = None,
    purpose: Optional[str] = None,
    risk_level: Optional[str] = None,
    resource: Optional[Mapping[str, "JSONValue"]] = None,
    ai: Optional[Mapping[str, "JSONValue"]] = None,
    attributes: Optional[Mapping[str, "JSONValue"]] = None,
) -> AuditedCall:
    """Audit a model (or tool) call: as ``with audited(em, ...) as call:``,
    ``async with``, or ``@audited(em, ...)`` on a function (sync or async).

    ``tenant``, ``source`` and ``actor`` may come from the emitter's
    ``defaults`` instead.
    """
    fields: Dict[str, "JSONValue"] = {}
    for name, value in (("tenant", tenant), ("source", source), ("actor", actor),
                        ("subject", subject), ("purpose", purpose), ("risk_level", risk_level),
                        ("resource", resource)):
        if value is not None:
            fields[name] = cast("JSONValue", dict(value) if isinstance(value, Mapping) else value)
    gen_ai: Dict[str, "JSONValue"] = dict(ai or {})
    for short, value in (("provider", provider), ("model", model), ("operation", operation)):
        if value is not None:
            gen_ai[_SHORT[short]] = value
    return AuditedCall(emitter, action, fields, gen_ai, dict(attributes or {}))
