"""`python -m benchmarks [NAME…]`: run all benchmarks (or the named ones), print a summary.

Exit status 1 if any judged number missed its target or a benchmark crashed.
"""

from __future__ import annotations

import os

# Before anything imports litellm: no network fetch of the model cost map.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"

import argparse
import importlib
import sys
import time
import traceback

from benchmarks import BENCHMARKS
from benchmarks.common import Result


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _verdict(r: Result) -> str:
    if r.ok is None:
        return "SKIP" if r.note.startswith("skipped") else "INFO"
    return "PASS" if r.ok else "MISS"


def table(results: list[Result]) -> str:
    header = ("benchmark", "kyros", "anchor", "anchor value", "ratio", "target", "result")
    rows = [header]
    for r in results:
        value = f"{_fmt(r.value)} {r.unit}".strip() if r.value is not None else "—"
        anchor = f"{_fmt(r.anchor_value)} {r.unit}".strip() if r.anchor_value is not None else "—"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "—"
        rows.append(
            (r.name, value, r.anchor_name or "—", anchor, ratio, r.target_text or "—", _verdict(r))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    names = args.names or list(BENCHMARKS)
    results: list[Result] = []
    started = time.monotonic()
    for name in names:
        sys.stderr.write(f"== {name}\n")
        sys.stderr.flush()
        t0 = time.monotonic()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            got = module.run()
        except Exception as exc:
            traceback.print_exc()
            got = [
                Result(name, None, "", "", None, "", False, f"error: {type(exc).__name__}: {exc}")
            ]
        results += got
        sys.stderr.write(f"   {name} took {time.monotonic() - t0:.1f}s\n")
    print(table(results))
    print(
        f"\ntotal {time.monotonic() - started:.0f}s, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus"
    )
    return 1 if any(r.ok is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
