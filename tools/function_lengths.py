"""Lengths of the functions in a package, docstrings excluded.

    python tools/function_lengths.py [linrfm] [--over 60]

Prints the count, median, 90th percentile and maximum, and every function
longer than ``--over`` lines. The length of a function is the number of
lines from its ``def`` to its last line, minus its docstring's lines (nested
functions count inside their parent and on their own).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np


def function_lengths(root) -> list[tuple[str, int]]:
    """``(qualified name, length)`` of every function under ``root``."""
    out = []
    for path in sorted(Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                length -= body[0].end_lineno - body[0].lineno + 1
            out.append((f"{path}:{node.lineno}:{node.name}", length))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="linrfm")
    parser.add_argument("--over", type=int, default=60)
    args = parser.parse_args(argv)
    lengths = function_lengths(args.root)
    n = np.array([k for _, k in lengths])
    print(f"{len(n)} functions: median {np.median(n):g}, p90 {np.percentile(n, 90):g}, "
          f"max {n.max()}")
    long = [(name, k) for name, k in lengths if k > args.over]
    for name, k in sorted(long, key=lambda x: -x[1]):
        print(f"  {k:4d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
