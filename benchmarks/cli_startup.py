"""Wall time of `csa --help` and `csa list` (under 0.3 s: no torch on that path), and of a cached
`csa export csa-tiny` and `csa check csa-tiny` (within 3x of `csa --help`: a cached stage answers from
its key, without torch, timm or onnxruntime).

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--against REV]
Prints the median and best of N runs (at least 5) of each command, and whether torch was imported.
The cached stages run in a CSA_HOME of their own, filled by one untimed export and check first.
With --against REV, the tree at REV (checked out in a temporary git worktree) is timed too, in the
same run, round by round (measure/sidebyside.py: every command on both trees once per round, the
order rotated every round), and each command's new/old ratio is printed with its bootstrap 95%
interval (the verdict where it is wider than ±10%) and the IQR of its per-round ratios.
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

from csa_cli.measure.sidebyside import interleave_steps
from csa_cli.measure.stats import ratio_spread
from csa_cli.measure.timing import MeasureSettings

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
        # measure/sidebyside.py: one warm-up each (the first run pays for cold file caches and fills the
        # stages' cache), then every (command, tree) once per round, the order rotated every round
        labels = {(c, t): f"{c} @{t}" for c in COMMANDS for t in trees}
        steps = {label: (lambda i, tree=trees[t], c=c: run_once(tree, c.split())) for (c, t), label in labels.items()}
        side = interleave_steps(steps, MeasureSettings(warmup=1, iterations=args.runs))
        times = {key: side.round_ms[label] for key, label in labels.items()}  # seconds: the steps return seconds
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
            print(f"\n| command | new / old (median) [95% interval] | per-round ratio IQR | within {args.limit}x |")
            print("| --- | --- | --- | --- |")
            for command in COMMANDS:
                spread = ratio_spread(times[(command, "new")], times[(command, "old")])
                within = spread.ratio <= args.limit
                ok &= within
                print(f"| csa {command} | {spread.describe(3)} | {spread.iqr_low:.3f} - {spread.iqr_high:.3f} | {'yes' if within else 'NO'} |")
        print(f"\n{side.describe()}")
    return 0 if ok else 1


if __name__ == "__main__":
    import shutil

    try:
        raise SystemExit(main())
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
