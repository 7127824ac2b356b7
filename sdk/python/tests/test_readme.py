"""The package README's complete example runs as written (against a real
ledger: only its URL is replaced) and does what its comments say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import Ledger

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_and_its_events_land(ledger: Ledger, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has a Python example"
    code = blocks[0].replace("http://127.0.0.1:7381", ledger.url)
    env = dict(os.environ, AIAUDIT_TOKEN=ledger.create_token("acme"))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("actor.type - actor.type: \"robot\" is not one of"), lines
    assert lines[1].startswith("True Stats("), lines
    events = {e["event"]["action"]: e["event"] for e in ledger.wait_events("acme", 2)}
    assert events["agent.decision"]["resource"] == {"type": "loan_application", "id": "LA-99812"}
    assert events["model.invoke"]["ai"]["gen_ai.usage.input_tokens"] == 812
    assert events["model.invoke"]["source"] == {"name": "loan-assistant", "version": "3.2.0"}
