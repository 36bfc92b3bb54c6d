"""Wall time of `csa --help` and `csa list` (they must stay under 0.3 s: no torch on that path).

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs 10]
Prints the median and best of N runs of each command, and whether torch was imported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 0.3


def csa_executable() -> list[str]:
    exe = Path(sys.executable).with_name("csa")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "csa_cli"]


def time_command(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def torch_imported(command: str) -> bool:
    code = (
        "import sys\nsys.argv = ['csa', " + ", ".join(repr(a) for a in command.split()) + "]\n"
        "from csa_cli.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stderr.strip().splitlines()[-1] == "True"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    base = csa_executable()
    print(f"| command | median (s) | best (s) | torch imported | under {BUDGET_S} s |")
    print("| --- | --- | --- | --- | --- |")
    ok = True
    for command in ("--help", "list"):
        times = time_command([*base, *command.split()], args.runs)
        median = statistics.median(times)
        under = median < BUDGET_S
        ok &= under
        print(f"| csa {command} | {median:.3f} | {min(times):.3f} | {torch_imported(command)} | {'yes' if under else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
