"""Compares the cost of `emit` between builds of the package inside one
process, interleaved, with `json.dumps` of the same events as a yardstick
(docs/performance.md, "Python emitter"). This machine's speed drifts by up
to 2x within minutes, so separate runs of bench_emitter.py cannot show a
10 % change; blocks of one build alternating with blocks of the other can.

    pip install --target /tmp/before ./sdk/python   # at the old commit
    pip install --target /tmp/after ./sdk/python    # at the new one
    python3 sdk/python/bench/ab_emit.py /tmp/before/aiaudit /tmp/after/aiaudit

Each argument is an installed `aiaudit` package directory; each is loaded
under its own module name (the package imports itself relatively).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).parent))
from bench_emitter import make_events  # noqa: E402


def load(package_dir: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, package_dir / "__init__.py",
                                                  submodule_search_locations=[str(package_dir)])
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("packages", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=10_000)
    args = ap.parse_args()
    emitters: Dict[str, Callable[[Dict[str, Any]], object]] = {}
    closers = []
    for i, pkg in enumerate(args.packages):
        mod = load(pkg.resolve(), f"aiaudit_build_{i}")
        # Never reached: events stay in the spool, which is all emit touches.
        em = mod.Emitter(url="http://127.0.0.1:9", spool_dir=tempfile.mkdtemp(), max_spool_bytes=1 << 34)
        emitters[f"{i}: {pkg}"] = em.emit
        closers.append(em)
    emitters["json.dumps"] = json.dumps
    events = make_events(args.block * 2)
    results: Dict[str, List[float]] = {name: [] for name in emitters}
    names = list(emitters)
    gc.disable()
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = emitters[name]
            block = events[(r % 2) * args.block:(r % 2 + 1) * args.block]
            t = time.perf_counter()
            for e in block:
                fn(e)
            results[name].append((time.perf_counter() - t) / len(block) * 1e6)
        for em in closers:
            em.sync()
    for name, xs in results.items():
        xs.sort()
        print(f"{name}: median {statistics.median(xs):.2f} us per call "
              f"(min {xs[0]:.2f}, quartiles {xs[len(xs) // 4]:.2f} .. {xs[3 * len(xs) // 4]:.2f})")
    for em in closers:
        em.close(timeout=0)


if __name__ == "__main__":
    main()
