"""aiaudit.audited: timing, outcome, errors and gen_ai.* attributes, from
OpenAI-compatible responses or values the caller sets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict

import pytest

import aiaudit
from aiaudit import Emitter, audited
from aiaudit.genai import response_attributes

from conftest import Ledger

DEFAULTS = {"tenant": "acme", "source": {"name": "chat-service", "version": "1.4.0"},
            "actor": {"id": "agent-7", "type": "agent"}}


def by_id(ledger: Ledger, n: int) -> Dict[str, Dict[str, Any]]:
    return {e["id"]: e["event"] for e in ledger.wait_events("acme", n)}


def test_openai_shaped_responses_become_gen_ai_attributes() -> None:
    as_dict = {"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06",
               "usage": {"prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908},
               "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}
    assert response_attributes(as_dict) == {
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 96,
        "gen_ai.response.finish_reasons": ["stop", "length"]}
    # An SDK object (attributes, not keys), in the input/output_tokens + stop_reason shape.
    as_object = SimpleNamespace(id="msg_1", model="claude-x", stop_reason="end_turn",
                                usage=SimpleNamespace(input_tokens=10, output_tokens=3))
    assert response_attributes(as_object) == {
        "gen_ai.response.model": "claude-x", "gen_ai.response.id": "msg_1",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ["end_turn"]}
    # Nothing usable: nothing invented (negative or boolean counts are not counts).
    assert response_attributes({"usage": {"prompt_tokens": -1, "completion_tokens": True}}) == {}
    assert response_attributes("plain text") == {}


def test_context_manager_decorator_and_async_record_one_event_per_call(ledger: Ledger, tmp_path: Path) -> None:
    em = Emitter(url=ledger.url, token=ledger.create_token("acme"), spool_dir=tmp_path / "spool",
                 defaults=DEFAULTS)

    with audited(em, provider="openai", model="gpt-4o", operation="chat", subject="customer-5521",
                 attributes={"route": "/ask"}) as call:
        call.record_response({"id": "r1", "model": "gpt-4o-2024-08-06",
                              "usage": {"prompt_tokens": 12, "completion_tokens": 5},
                              "choices": [{"finish_reason": "stop"}]})
    ok_id = call.event_id
    assert ok_id is not None

    with pytest.raises(TimeoutError):
        with audited(em, provider="openai", model="gpt-4o") as failing:
            raise TimeoutError("upstream took too long")
    failed_id = failing.event_id
    assert failed_id is not None

    @audited(em, action="tool.call", attributes={"tool": "search"})
    def search(q: str) -> Dict[str, Any]:
        return {"model": "retriever-2", "usage": {"input_tokens": 3, "output_tokens": 0}}

    assert search("loan rules")["model"] == "retriever-2"

    @audited(em, provider="anthropic", model="claude-x")
    async def ask(q: str) -> Any:
        await asyncio.sleep(0)
        return SimpleNamespace(model="claude-x-2026", usage=SimpleNamespace(input_tokens=7, output_tokens=2))

    asyncio.run(ask("hello"))
    with audited(em, provider="local") as manual:
        manual.set(model="llama-3", input_tokens=4, output_tokens=9, purpose="summary")
    assert em.flush(timeout=30.0)
    em.close()

    events = by_id(ledger, 5)
    ok = events[ok_id]
    assert ok["action"] == "model.invoke"
    assert ok["outcome"] == {"status": "success"}
    assert ok["subject"] == "customer-5521" and ok["tenant"] == "acme"
    assert ok["ai"] == {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                        "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-4o-2024-08-06",
                        "gen_ai.response.id": "r1", "gen_ai.usage.input_tokens": 12,
                        "gen_ai.usage.output_tokens": 5, "gen_ai.response.finish_reasons": ["stop"]}
    assert ok["attributes"]["route"] == "/ask" and ok["attributes"]["duration_ms"] >= 0

    failed = events[failed_id]
    assert failed["outcome"] == {"status": "failure", "reason": "TimeoutError: upstream took too long"}
    assert failed["attributes"]["error.type"] == "TimeoutError"

    by_action = {e["action"]: e for e in events.values() if e["action"] == "tool.call"}
    assert by_action["tool.call"]["ai"]["gen_ai.response.model"] == "retriever-2"
    assert by_action["tool.call"]["attributes"]["tool"] == "search"
    asynced = [e for e in events.values() if e.get("ai", {}).get("gen_ai.provider.name") == "anthropic"]
    assert asynced[0]["ai"]["gen_ai.usage.output_tokens"] == 2
    local = [e for e in events.values() if e.get("ai", {}).get("gen_ai.provider.name") == "local"][0]
    assert local["ai"]["gen_ai.request.model"] == "llama-3" and local["purpose"] == "summary"


def test_a_call_the_schema_refuses_raises_invalid_event() -> None:
    em = Emitter(url="http://127.0.0.1:9", defaults=DEFAULTS)
    with pytest.raises(aiaudit.InvalidEvent, match="risk_level"):
        with audited(em, risk_level="enormous"):
            pass
    em.close(timeout=0)
