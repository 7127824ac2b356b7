"""Per-crate line coverage from `cargo llvm-cov report --json --summary-only`.

check:  fails when a crate is more than COVERAGE_SLACK points (default 3)
        below the recorded figure, or a recorded crate is missing.
record: writes the figures, the date and the commit to the baseline file.
"""
import datetime
import json
import os
import subprocess
import sys


# Test support, not shipped: its lines run inside the tests themselves.
NOT_MEASURED = {"testpg"}


def per_crate(summary_path, root):
    """{crate directory: (covered, count)} over each crate's src/ files."""
    data = json.load(open(summary_path))["data"][0]["files"]
    crates = {}
    prefix = os.path.join(root, "crates") + os.sep
    for f in data:
        name = f["filename"]
        if not name.startswith(prefix):
            continue
        crate, _, rest = name[len(prefix):].partition(os.sep)
        if not rest.startswith("src" + os.sep) or crate in NOT_MEASURED:
            continue  # tests, benches, build scripts, test support
        lines = f["summary"]["lines"]
        covered, count = crates.get(crate, (0, 0))
        crates[crate] = (covered + lines["covered"], count + lines["count"])
    return crates


def main():
    mode, summary_path, baseline_path, root = sys.argv[1:5]
    crates = per_crate(summary_path, root)
    if not crates:
        sys.exit("coverage: the report names no crate's src/ files (did the tests run instrumented?)")
    slack = float(os.environ.get("COVERAGE_SLACK", "3"))
    baseline = {}
    if os.path.exists(baseline_path):
        baseline = json.load(open(baseline_path))["crates"]
    print(f"{'crate':<12} {'lines':>15} {'now':>8} {'recorded':>9}")
    failed = []
    for crate in sorted(set(crates) | set(baseline)):
        covered, count = crates.get(crate, (0, 0))
        now = 100.0 * covered / count if count else 0.0
        was = baseline.get(crate, {}).get("percent")
        mark = ""
        if mode == "check" and was is not None:
            if crate not in crates:
                failed.append(f"{crate}: recorded at {was:.1f} %, not measured now")
                mark = "  MISSING"
            elif now < was - slack:
                failed.append(f"{crate}: {now:.1f} % < {was:.1f} % - {slack:g}")
                mark = "  DROPPED"
        was_text = f"{was:.1f} %" if was is not None else "-"
        print(f"{crate:<12} {covered:>7}/{count:<7} {now:>6.1f} % {was_text:>9}{mark}")
    covered = sum(c for c, _ in crates.values())
    count = sum(n for _, n in crates.values())
    print(f"{'all':<12} {covered:>7}/{count:<7} {100.0 * covered / count:>6.1f} %")
    if mode == "record":
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        json.dump({
            "measured": datetime.date.today().isoformat(),
            "commit": commit,
            "command": "source .ci/coverage env && cargo test --workspace && bash .ci/coverage record",
            "crates": {c: {"covered": cv, "lines": n, "percent": round(100.0 * cv / n, 1)}
                       for c, (cv, n) in sorted(crates.items()) if n},
        }, open(baseline_path, "w"), indent=2)
        open(baseline_path, "a").write("\n")
        print(f"recorded in {baseline_path}")
    if failed:
        print("coverage dropped:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
