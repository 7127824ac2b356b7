"""The OpenTelemetry bridge: GenAI spans and log records as audit events.

An application already instrumented for OpenTelemetry (by hand, or with
OpenLLMetry / OpenInference instrumentations) gets a tamper-evident trail by
adding one exporter next to the ones it has::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from aiaudit.otel import AuditSpanExporter
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(AuditSpanExporter(em, tenant="acme")))

Each span that carries GenAI attributes (or an explicit ``action``
attribute) becomes one event; other spans are left alone. Log records
(GenAI events) go through :class:`AuditLogExporter` and are mapped by the
ledger's own OTLP mapping (docs/otlp.md), so a record becomes the same event
whether it is exported here or sent to the ledger's ``/v1/logs``.

Mapped: OpenTelemetry GenAI semantic conventions **1.37** names. Older and
vendor names are renamed first (:data:`RENAMED`): when both an old and the
current name are present the current one wins and the old one is dropped.
Message content (prompts, completions) never goes into ``ai``: it becomes
``input`` / ``output``, as a SHA-256 of its canonical JSON unless
``capture_content=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

from . import _native
from ._native import AuditError, InvalidEvent

try:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import StatusCode
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aiaudit.otel needs the OpenTelemetry SDK: pip install 'aiaudit[otel]'"
    ) from e

try:  # the logs SDK renamed its exporter in 1.39
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:  # pragma: no cover - older SDKs
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult  # type: ignore

if TYPE_CHECKING:
    from ._emitter import Emitter

log = logging.getLogger("aiaudit.otel")

#: Older or vendor attribute names and the GenAI semantic-convention (1.37) name they become.
RENAMED: Dict[str, str] = {
    # semantic conventions before 1.37 / 1.27
    "gen_ai.system": "gen_ai.provider.name",
    "gen_ai.usage.prompt_tokens": "gen_ai.usage.input_tokens",
    "gen_ai.usage.completion_tokens": "gen_ai.usage.output_tokens",
    # OpenInference
    "llm.provider": "gen_ai.provider.name",
    "llm.system": "gen_ai.provider.name",
    "llm.model_name": "gen_ai.request.model",
    "llm.token_count.prompt": "gen_ai.usage.input_tokens",
    "llm.token_count.completion": "gen_ai.usage.output_tokens",
    # OpenLLMetry (Traceloop)
    "llm.request.type": "gen_ai.operation.name",
}

#: Attributes holding message content, by the event field they feed (exact names and ``name.*``).
CONTENT: Dict[str, Tuple[str, ...]] = {
    "input": ("gen_ai.prompt", "gen_ai.input.messages", "gen_ai.system_instructions",
              "input.value", "llm.input_messages"),
    "output": ("gen_ai.completion", "gen_ai.output.messages", "output.value",
               "llm.output_messages"),
}

#: ``gen_ai.operation.name`` values with an action of their own; other GenAI spans are ``model.invoke``.
OPERATION_ACTIONS: Dict[str, str] = {
    "execute_tool": "tool.call",
    "invoke_agent": "agent.invoke",
    "create_agent": "agent.create",
}


def _plain(value: Any) -> Any:
    """OpenTelemetry attribute values (tuples) as JSON values."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def normalize(attributes: Mapping[str, Any], capture_content: bool) -> Dict[str, Any]:
    """Renamed attributes to their current names, message content moved to
    ``input.*`` / ``output.*`` (hashed unless ``capture_content``)."""
    attrs: Dict[str, Any] = {k: _plain(v) for k, v in attributes.items()}
    for old, new in RENAMED.items():
        if old in attrs:
            value = attrs.pop(old)
            attrs.setdefault(new, value)
    for field, names in CONTENT.items():
        found = {k: attrs.pop(k) for k in sorted(attrs)
                 if any(k == n or k.startswith(n + ".") for n in names)}
        if not found or f"{field}.content" in attrs or f"{field}.sha256" in attrs:
            continue
        content: Any = next(iter(found.values())) if len(found) == 1 else found
        if capture_content:
            attrs[f"{field}.content"] = content
        else:
            canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            attrs[f"{field}.sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    return attrs


def _is_genai(attrs: Mapping[str, Any]) -> bool:
    return any(k.startswith("gen_ai.") for k in attrs)


class _Bridge:
    def __init__(self, emitter: "Emitter", tenant: Optional[str], capture_content: bool) -> None:
        self.emitter = emitter
        defaults = emitter._defaults or {}
        default_tenant = defaults.get("tenant")
        self.tenant = tenant if tenant is not None else (default_tenant if isinstance(default_tenant, str) else None)
        self.capture_content = capture_content
        #: Records that could not become events (no source, invalid), counted and logged.
        self.rejected = 0
        #: Events handed to the emitter.
        self.emitted = 0

    def _emit(self, event_json: str, extra_attributes: Mapping[str, Any], extra: Mapping[str, Any]) -> bool:
        event = json.loads(event_json)
        if extra_attributes:
            event.setdefault("attributes", {}).update(extra_attributes)
        event.update(extra)
        try:
            self.emitter.emit(event)
        except InvalidEvent as e:
            self.rejected += 1
            log.warning("aiaudit: an OpenTelemetry record is not a valid audit event (%s); skipped", e)
            return True
        except AuditError as e:
            log.error("aiaudit: could not queue an OpenTelemetry record: %s", e)
            return False
        self.emitted += 1
        return True


class AuditSpanExporter(SpanExporter, _Bridge):
    """A ``SpanExporter`` that records GenAI spans as audit events through
    an :class:`aiaudit.Emitter` (durable spool, exactly once by id).

    The event id is ``otel-<trace id>-<span id>``, so a span exported twice
    is logged once. ``outcome`` is ``failure`` (with the status description)
    for spans with status ERROR, else ``success``. ``attributes`` gains
    ``otel.span.name``, ``otel.span.kind`` and ``duration_ms``.
    """

    def __init__(self, emitter: "Emitter", *, tenant: Optional[str] = None,
                 capture_content: bool = False) -> None:
        _Bridge.__init__(self, emitter, tenant, capture_content)

    def span_to_event_json(self, span: ReadableSpan) -> Optional[str]:
        """The event for ``span`` as JSON text (before the span-only fields), or None to skip it."""
        attrs = normalize(span.attributes or {}, self.capture_content)
        if not _is_genai(attrs) and "action" not in attrs:
            return None
        ctx = span.get_span_context()
        trace_id = ctx.trace_id if ctx is not None else 0
        span_id = ctx.span_id if ctx is not None else 0
        if "id" not in attrs and trace_id and span_id:
            attrs["id"] = f"otel-{trace_id:032x}-{span_id:016x}"
        if "action" not in attrs:
            attrs["action"] = OPERATION_ACTIONS.get(str(attrs.get("gen_ai.operation.name")), "model.invoke")
        if "tenant" not in attrs and self.tenant is not None:
            attrs["tenant"] = self.tenant
        if "outcome.status" not in attrs:
            if span.status.status_code == StatusCode.ERROR:
                attrs["outcome.status"] = "failure"
                if span.status.description:
                    attrs.setdefault("outcome.reason", span.status.description[:1000])
            else:
                attrs["outcome.status"] = "success"
        scope = span.instrumentation_scope
        start = span.start_time or 0
        try:
            return _native.map_log_record(
                dict(span.resource.attributes), scope.name if scope else None,
                scope.version if scope else None, attrs, None, None, None,
                start, span.end_time or start, trace_id, span_id)
        except ValueError as e:
            self.rejected += 1
            log.warning("aiaudit: span %r cannot be an audit event (%s); skipped", span.name, e)
            return None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = True
        for span in spans:
            event_json = self.span_to_event_json(span)
            if event_json is None:
                continue
            duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            extra_attributes = {"otel.span.name": span.name, "otel.span.kind": span.kind.name.lower(),
                                "duration_ms": round(max(duration_ms, 0.0), 3)}
            extra: Dict[str, Any] = {}
            if span.parent is not None and span.parent.span_id:
                extra["parent_span_id"] = f"{span.parent.span_id:016x}"
            ok = self._emit(event_json, extra_attributes, extra) and ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Everything exported so far is on disk in the spool (delivery goes on in the background)."""
        return self.emitter.sync()

    def shutdown(self) -> None:
        if not self.emitter.closed:
            self.emitter.sync()


class AuditLogExporter(_LogExporterBase, _Bridge):
    """A log exporter that records OpenTelemetry log records (GenAI events
    such as ``gen_ai.client.inference.operation.details``) as audit events
    with the ledger's OTLP mapping. Records named ``gen_ai.*`` without an
    ``action`` attribute are ``model.invoke``; records with neither GenAI
    attributes nor an ``action`` are skipped (counted in ``rejected``)."""

    def __init__(self, emitter: "Emitter", *, tenant: Optional[str] = None,
                 capture_content: bool = False) -> None:
        _Bridge.__init__(self, emitter, tenant, capture_content)

    def export(self, batch: Sequence[Any]) -> Any:
        ok = True
        for item in batch:
            record = item.log_record
            resource = getattr(item, "resource", None) or getattr(record, "resource", None)
            scope = getattr(item, "instrumentation_scope", None)
            attrs = normalize(record.attributes or {}, self.capture_content)
            event_name = getattr(record, "event_name", None)
            if "action" not in attrs and isinstance(event_name, str) and event_name.startswith("gen_ai."):
                attrs["action"] = "model.invoke"
            if "tenant" not in attrs and self.tenant is not None:
                attrs["tenant"] = self.tenant
            body = record.body
            if body is not None and not self.capture_content and isinstance(event_name, str) \
                    and event_name.startswith("gen_ai."):
                canonical = json.dumps(_plain(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                attrs["log.body_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
                body = None
            try:
                event_json = _native.map_log_record(
                    dict(resource.attributes) if resource is not None else {},
                    scope.name if scope else None, scope.version if scope else None,
                    attrs, _plain(body) if body is not None else None, event_name,
                    record.severity_text, record.timestamp or 0, record.observed_timestamp or 0,
                    record.trace_id or 0, record.span_id or 0)
            except ValueError as e:
                self.rejected += 1
                log.debug("aiaudit: log record skipped: %s", e)
                continue
            ok = self._emit(event_json, {}, {}) and ok
        return _LogResult.SUCCESS if ok else _LogResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.emitter.sync()

    def shutdown(self) -> None:
        if not self.emitter.closed:
            self.emitter.sync()


__all__ = ["AuditSpanExporter", "AuditLogExporter", "RENAMED", "CONTENT", "OPERATION_ACTIONS", "normalize"]
