"""The OpenTelemetry bridge with the real OpenTelemetry Python SDK: a GenAI
span and a GenAI log record land as the expected audit events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import Status, StatusCode  # noqa: E402

from aiaudit import Emitter  # noqa: E402
from aiaudit.otel import AuditLogExporter, AuditSpanExporter, normalize  # noqa: E402

from conftest import Ledger  # noqa: E402


def test_renamed_attributes_and_content() -> None:
    attrs = normalize({"gen_ai.system": "openai", "gen_ai.provider.name": "azure.ai.openai",
                       "gen_ai.usage.prompt_tokens": 5, "llm.model_name": "gpt-4o",
                       "gen_ai.prompt.0.content": "What is my limit?", "gen_ai.prompt.0.role": "user",
                       "output.value": "250000 NGN", "llm.request.type": "chat",
                       "gen_ai.response.finish_reasons": ("stop",)}, capture_content=False)
    # The current name wins over the old one; old names move to current ones.
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai" and "gen_ai.system" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 5 and attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    # Content leaves only as a digest unless asked for.
    assert not any(k.startswith("gen_ai.prompt") for k in attrs)
    assert len(attrs["input.sha256"]) == 64 and len(attrs["output.sha256"]) == 64
    kept = normalize({"output.value": "250000 NGN"}, capture_content=True)
    assert kept == {"output.content": "250000 NGN"}


def run_spans(em: Emitter, memory: InMemorySpanExporter) -> Dict[str, str]:
    provider = TracerProvider(resource=Resource.create({"service.name": "loan-assistant",
                                                         "service.version": "3.2.0"}))
    exporter = AuditSpanExporter(em, tenant="acme")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.genai", "0.1")
    out: Dict[str, str] = {}
    with tracer.start_as_current_span("invoke_agent loan-agent") as parent:
        parent.set_attribute("gen_ai.operation.name", "invoke_agent")
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.system", "openai")  # the pre-1.37 name
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 812)
            span.set_attribute("gen_ai.usage.output_tokens", 96)
            span.set_attribute("gen_ai.prompt.0.content", "Should LA-99812 be approved?")
            span.set_attribute("actor.id", "agent-7")
            span.set_attribute("actor.type", "agent")
            span.set_attribute("subject", "customer-5521")
            ctx = span.get_span_context()
            out["chat"] = f"otel-{ctx.trace_id:032x}-{ctx.span_id:016x}"
            out["parent_span"] = f"{parent.get_span_context().span_id:016x}"
        with tracer.start_as_current_span("execute_tool credit_score") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "credit_score")
            tool.set_status(Status(StatusCode.ERROR, "bureau unreachable"))
            ctx = tool.get_span_context()
            out["tool"] = f"otel-{ctx.trace_id:032x}-{ctx.span_id:016x}"
        with tracer.start_as_current_span("plain http work"):
            pass  # not GenAI: not an audit event
        ctx = parent.get_span_context()
        out["agent"] = f"otel-{ctx.trace_id:032x}-{ctx.span_id:016x}"
    provider.shutdown()
    assert exporter.emitted == 3 and exporter.rejected == 0
    return out


def test_genai_spans_from_the_opentelemetry_sdk_land_as_events(ledger: Ledger, tmp_path: Path) -> None:
    em = Emitter(url=ledger.url, token=ledger.create_token("acme"), spool_dir=tmp_path / "spool")
    memory = InMemorySpanExporter()
    ids = run_spans(em, memory)
    assert em.flush(timeout=30.0)
    events: Dict[str, Any] = {e["id"]: e["event"] for e in ledger.wait_events("acme", 3)}
    assert set(events) == {ids["chat"], ids["tool"], ids["agent"]}

    chat = events[ids["chat"]]
    assert chat["action"] == "model.invoke"
    assert chat["source"] == {"name": "loan-assistant", "version": "3.2.0"}
    assert chat["actor"] == {"id": "agent-7", "type": "agent"}
    assert chat["subject"] == "customer-5521"
    assert chat["outcome"] == {"status": "success"}
    assert chat["ai"] == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                          "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 812,
                          "gen_ai.usage.output_tokens": 96}
    assert len(chat["input"]["sha256"]) == 64 and "content" not in chat["input"]
    assert chat["parent_span_id"] == ids["parent_span"]
    assert chat["trace_id"] == ids["chat"][5:37]
    assert chat["attributes"]["otel.span.name"] == "chat gpt-4o"
    assert chat["attributes"]["otel.scope.name"] == "tests.genai"
    assert chat["attributes"]["duration_ms"] >= 0

    tool = events[ids["tool"]]
    assert tool["action"] == "tool.call"
    assert tool["outcome"] == {"status": "failure", "reason": "bureau unreachable"}
    # The emitting service acted on its own behalf when no actor.id is set.
    assert tool["actor"] == {"id": "loan-assistant", "type": "service"}
    assert events[ids["agent"]]["action"] == "agent.invoke"

    # Exported again (a processor's retry): logged once.
    before = ledger.get_json("/v1/info")["sequenced_size"]
    again = AuditSpanExporter(em, tenant="acme")
    again.export(memory.get_finished_spans())
    assert again.emitted == 3
    assert em.flush(timeout=30.0)
    assert em.stats().duplicates == 3
    assert ledger.get_json("/v1/info")["sequenced_size"] == before
    em.close()


def test_genai_log_records_use_the_ledgers_otlp_mapping(ledger: Ledger, tmp_path: Path) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    em = Emitter(url=ledger.url, token=ledger.create_token("acme"), spool_dir=tmp_path / "spool")
    provider = LoggerProvider(resource=Resource.create({"service.name": "support-bot"}))
    exporter = AuditLogExporter(em, tenant="acme")
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.genai.logs")
    logger.emit(event_name="gen_ai.client.inference.operation.details",
                body={"messages": [{"role": "user", "content": "reset my password"}]},
                attributes={"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
                            "gen_ai.usage.output_tokens": 40, "actor.id": "u-17", "actor.type": "user"})
    logger.emit(body="an ordinary log line, not an audit event", attributes={"k": 1})
    provider.shutdown()
    assert exporter.emitted == 1 and exporter.rejected == 1
    assert em.flush(timeout=30.0)
    [logged] = ledger.wait_events("acme", 1)
    e = logged["event"]
    assert e["id"].startswith("otlp-") and e["action"] == "model.invoke"
    assert e["source"] == {"name": "support-bot"}
    assert e["actor"] == {"id": "u-17", "type": "user"}
    assert e["ai"] == {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
                       "gen_ai.usage.output_tokens": 40}
    assert e["attributes"]["log.event_name"] == "gen_ai.client.inference.operation.details"
    # The message content left only as a digest.
    assert "log.body" not in e["attributes"] and len(e["attributes"]["log.body_sha256"]) == 64
    em.close()
