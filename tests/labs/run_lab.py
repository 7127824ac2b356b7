"""Runs an operator lab (docs/labs/*.md) and checks its expected outcomes,
so that a lab never rots. tests/e2e/labs.rs runs every lab in CI.

    python3 tests/labs/run_lab.py docs/labs/01-first-deployment.md --bin target/debug/aiaudit

What a lab page may hold:

* ```console blocks are run, in page order, by one bash process in a fresh
  working directory (variables and `cd` carry over from command to
  command). A line starting with `$ ` is a command (a line ending in `\\`
  continues it); the lines after it, up to the next command, are output it
  must print (stdout and stderr together): each non-blank line must appear,
  in order, and `...` in a line stands for anything. A here-document
  (`<<'EOF'`) belongs to its command up to its delimiter.
* A command must exit 0, unless its first expected line is `[exit N]`
  (exactly N) or `[exit nonzero]`.
* Other blocks (```sh, ```toml, ...) are shown, not run.
* `aiaudit` is the binary under test (on PATH first); labs use ports from
  17381 up so as not to meet a ledger the reader already runs.

Everything the lab started is killed at the end (its own process group).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional


@dataclass
class Step:
    command: str
    line: int
    expected: List[str] = field(default_factory=list)
    exit: Optional[str] = "0"


def parse(text: str) -> List[Step]:
    steps: List[Step] = []
    in_console = False
    pending: Optional[Step] = None
    continuing = False
    heredoc: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line.startswith("```"):
            if in_console:
                in_console = False
                pending = None
            elif line.strip() == "```console":
                in_console = True
            continue
        if not in_console:
            continue
        if heredoc is not None and pending is not None:
            pending.command += "\n" + raw
            if line == heredoc:
                heredoc = None
            continue
        if continuing and pending is not None:
            pending.command += "\n" + line
            continuing = line.endswith("\\")
            continue
        if line.startswith("$ "):
            pending = Step(command=line[2:], line=number)
            steps.append(pending)
            continuing = line.endswith("\\")
            here = re.search(r"<<-?\s*'?\"?([A-Za-z_]+)", line)
            heredoc = here.group(1) if here else None
            continue
        if pending is None or not line.strip():
            continue
        m = re.fullmatch(r"\[exit (\d+|nonzero)\]", line.strip())
        if m and not pending.expected:
            pending.exit = m.group(1)
            continue
        pending.expected.append(line.strip())
    return steps


def matches(expected: List[str], output: str) -> Optional[str]:
    """None when every expected line appears in order; else the first that does not."""
    at = 0
    for want in expected:
        pos = at
        found = True
        for piece in want.split("..."):
            if not piece:
                continue
            j = output.find(piece, pos)
            if j < 0:
                found = False
                break
            pos = j + len(piece)
        if not found:
            return want
        at = pos
    return None


def run(lab: Path, binary: Path, keep: bool) -> int:
    steps = parse(lab.read_text())
    if not steps:
        print(f"{lab}: no console blocks", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="aiaudit-lab-"))
    outs = work / ".lab-out"
    outs.mkdir()
    bindir = work / ".lab-bin"
    bindir.mkdir()
    (bindir / "aiaudit").symlink_to(binary.resolve())
    script = ["set -u", f"cd {work}"]
    for i, step in enumerate(steps):
        script.append(f"{{ {step.command}\n}} > {outs}/{i} 2>&1 < /dev/null; echo $? > {outs}/{i}.rc")
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}", AIAUDIT_LOG="warn",
               HOME=str(work))
    for var in [v for v in env if v.startswith("AIAUDIT_") and v != "AIAUDIT_LOG"]:
        del env[var]
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], env=env, cwd=work,
                            start_new_session=True)
    try:
        proc.wait(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    failures = 0
    for i, step in enumerate(steps):
        out_file = outs / str(i)
        rc_file = outs / f"{i}.rc"
        where = f"{lab}:{step.line}: $ {step.command.splitlines()[0]}"
        if not rc_file.exists():
            print(f"{where}\n  never finished", file=sys.stderr)
            failures += 1
            continue
        output = out_file.read_text(errors="replace")
        rc = int(rc_file.read_text().strip() or "-1")
        bad_exit = (step.exit == "nonzero" and rc == 0) or (step.exit not in (None, "nonzero") and rc != int(step.exit or 0))
        missing = matches(step.expected, output)
        if bad_exit or missing is not None:
            failures += 1
            why = f"exit {rc}, expected {step.exit}" if bad_exit else f"missing: {missing}"
            print(f"{where}\n  {why}\n  output:\n    " + "\n    ".join(output.splitlines()[-40:]), file=sys.stderr)
    if failures == 0:
        print(f"{lab}: {len(steps)} commands, every expected outcome seen")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"{lab}: {failures} of {len(steps)} commands failed (work directory kept: {work})", file=sys.stderr)
    return 1 if failures else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("labs", nargs="+", type=Path)
    ap.add_argument("--bin", type=Path, default=Path("target/debug/aiaudit"))
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()
    status = 0
    for lab in args.labs:
        status |= run(lab, args.bin, args.keep)
    sys.exit(status)


if __name__ == "__main__":
    main()
