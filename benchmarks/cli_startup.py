"""Wall time of `csa --help` and `csa list` (under 0.3 s: no torch on that path), and of a cached
`csa export csa-tiny` and `csa check csa-tiny` (within 3x of `csa --help`: a cached stage answers from
its key, without torch, timm or onnxruntime).

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--against REV]
Prints the median and best of N runs (at least 5) of each command, and whether torch was imported.
The cached stages run in a CSA_HOME of their own, filled by one untimed export and check first.
With --against REV, the tree at REV (checked out in a temporary git worktree) is timed too, in the
same run, round by round (old, new, old, new, ...), and each command's new/old ratio is printed
with the interquartile range of its per-round ratios: a noisy machine moves both sides alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

BUDGET_S = 0.3
CACHED_RATIO = 3.0  # a cached stage's median over `csa --help`'s, in the same run
REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("--help", "list", "export csa-tiny", "check csa-tiny")
CACHED = ("export csa-tiny", "check csa-tiny")


HOME = Path(tempfile.mkdtemp(prefix="csa-startup-home-"))  # the cached stages' CSA_HOME, one per tree


def _env(tree: Path) -> dict[str, str]:
    home = HOME / str(abs(hash(str(tree))))
    return {**os.environ, "PYTHONPATH": str(tree), "CSA_HOME": str(home)}


def run_once(tree: Path, args: list[str]) -> float:
    """One `python -m csa_cli ARGS` with `tree` first on the path (the same interpreter for every tree)."""
    env = _env(tree)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "csa_cli", *args], capture_output=True, check=True, env=env, cwd=tree)
    return time.perf_counter() - start


def torch_imported(tree: Path, command: str) -> bool:
    code = (
        "import sys\nsys.argv = ['csa', " + ", ".join(repr(a) for a in command.split()) + "]\n"
        "from csa_cli.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    env = _env(tree)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tree)
    return out.stderr.strip().splitlines()[-1] == "True"


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """The tree at `rev`, checked out (detached) in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="csa-startup-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False, capture_output=True)


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command (at least 5)")
    parser.add_argument("--against", metavar="REV", help="also time the tree at this git revision, interleaved")
    parser.add_argument("--limit", type=float, default=1.1, help="largest acceptable new/old median ratio (with --against)")
    args = parser.parse_args()
    args.runs = max(args.runs, 5)
    ok = True
    with worktree(args.against) if args.against else nullcontext(None) as old:
        trees = {"new": REPO, **({"old": old} if old is not None else {})}
        times: dict[tuple[str, str], list[float]] = {(c, t): [] for c in COMMANDS for t in trees}
        for command in COMMANDS:  # one warm-up each: the first run pays for cold file caches (and fills the stages' cache)
            for tree in trees.values():
                run_once(tree, command.split())
        for _ in range(args.runs):
            for command in COMMANDS:
                for name, tree in trees.items():
                    times[(command, name)].append(run_once(tree, command.split()))
        print(f"| command | tree | median (s) | best (s) | torch imported | within budget (< {BUDGET_S} s; cached: < {CACHED_RATIO:g}x --help) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for command in COMMANDS:
            for name, tree in trees.items():
                samples = times[(command, name)]
                median = statistics.median(samples)
                if command in CACHED:
                    ratio = median / statistics.median(times[("--help", name)])
                    under, said = ratio < CACHED_RATIO, f"{ratio:.2f}x --help"
                else:
                    under, said = median < BUDGET_S, f"{median:.3f} s"
                ok &= under or name == "old"
                label = name if old is None else f"{name} ({'HEAD' if name == 'new' else args.against})"
                verdict = f"{'yes' if under else 'NO'} ({said})"
                print(f"| csa {command} | {label} | {median:.3f} | {min(samples):.3f} | {torch_imported(tree, command)} | {verdict} |")
        if old is not None:
            print(f"\n| command | new / old (median) | per-round ratio IQR | within {args.limit}x |")
            print("| --- | --- | --- | --- |")
            for command in COMMANDS:
                new, base = times[(command, "new")], times[(command, "old")]
                ratio = statistics.median(new) / statistics.median(base)
                low, high = quartiles([n / b for n, b in zip(new, base, strict=True)])
                within = ratio <= args.limit
                ok &= within
                print(f"| csa {command} | {ratio:.3f} | {low:.3f} - {high:.3f} | {'yes' if within else 'NO'} |")
            print(f"\n{args.runs} rounds, interleaved; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    import shutil

    try:
        raise SystemExit(main())
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
