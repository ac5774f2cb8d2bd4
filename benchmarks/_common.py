"""Shared plumbing for benchmark scripts: machine description, result files, tables.

Every benchmark prints a table and writes ``benchmarks/results/<name>.csv`` plus
``<name>.json`` (rows + metadata: command, machine, package versions, time).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    """CPU model, core count, memory, load, BLAS and package versions of this machine."""
    from linrfm._provenance import environment_info

    return environment_info()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_results(name: str, rows: list[dict], meta: dict | None = None,
                  out_dir: Path | str | None = None) -> tuple[Path, Path]:
    """Write ``rows`` to ``<name>.csv`` and rows + metadata to ``<name>.json``."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"{name}.csv", out / f"{name}.json"
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    payload = {"name": name, "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": machine_info(), "meta": meta or {}, "rows": rows}
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    return csv_path, json_path


def print_table(rows: list[dict], columns: list[str] | None = None, file=None) -> None:
    """Print ``rows`` as a fixed-width table."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns), file=file)
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in columns), file=file)
