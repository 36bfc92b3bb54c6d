"""A module's mutation score without the survivors classified as equivalent (scripts/mutation-equivalents.tsv).

Called by scripts/mutation.sh after each module:
    mutation_equivalents.py --raw RESULTS NAME MODULE SECONDS    the raw score (with a sample's Wilson interval)
    mutation_equivalents.py RESULTS SURVIVORS EQUIVALENTS NAME   the score without the equivalent survivors
and by hand, for docs/testing.md:
    mutation_equivalents.py --list SURVIVORS EQUIVALENTS         each survivor, its mutated line and reason (Markdown)
RESULTS is `mutmut results --all true`, SURVIVORS the diffs the script collected. Both lines count
"checked" and "detected" the same way (`tally`). A survivor matches an
entry by its function (mutmut's name without "__mutmut_N") and its mutated line (the diff's "+" line,
stripped), so a classification outlives mutmut's renumbering but not a change of the line itself.
Prints one line: the score without the equivalent ones, and the survivors nobody classified.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def survivors(text: str) -> list[tuple[str, str, str]]:
    """(mutant, function, mutated line) of every "### mutant (status)" block of the survivors file."""
    found = []
    for block in text.split("### ")[1:]:
        head, *lines = block.splitlines()
        mutant = head.split(" (")[0].strip()
        plus = next((line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")), "")
        found.append((mutant, mutant.split("__mutmut_")[0], plus))
    return found


def reasons(path: Path) -> dict[tuple[str, str], str]:
    """{(function, mutated line): why it is equivalent} of the classification table."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            function, plus, reason = line.split("\t", 2)
            table[(function.strip(), plus.strip())] = reason.strip()
    return table


def listing(survivors_file: str, equivalents_file: str) -> None:
    known = reasons(Path(equivalents_file))
    for mutant, function, plus in survivors(Path(survivors_file).read_text(encoding="utf-8")):
        why = known.get((function, plus))
        tail = mutant.rsplit(".", 1)[-1]  # x_function__mutmut_N, or x\u01c1Class\u01c1method__mutmut_N
        name = tail[2:].replace("\u01c1", ".") if tail.startswith("x\u01c1") else tail.removeprefix("x_")
        print(f"- `{name}`: `{plus}`: " + (f"equivalent: {why}" if why else "unclassified"))


def tally(results: str) -> tuple[collections.Counter[str], int, int]:
    """Mutants per status, mutants checked (not skipped or unchecked) and detected (killed, timeout, segfault)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in Path(results).read_text(encoding="utf-8").splitlines():
        if "__mutmut_" in line and ":" in line:
            counts[line.rsplit(":", 1)[1].strip()] += 1
    checked = sum(n for status, n in counts.items() if status not in ("skipped", "not checked"))
    return counts, checked, counts["killed"] + counts["timeout"] + counts["segfault"]


def raw(results: str, name: str, module: str, seconds: str) -> None:
    counts, checked, detected = tally(results)
    score = 100.0 * detected / checked if checked else float("nan")
    detail = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    interval = ""
    if checked and counts["not checked"]:  # a sample: the Wilson score interval of the proportion (z = 1.96)
        z, p = 1.96, detected / checked
        centre, half = (p + z * z / (2 * checked)), z * (p * (1 - p) / checked + z * z / (4 * checked * checked)) ** 0.5
        low, high = (centre - half) / (1 + z * z / checked), (centre + half) / (1 + z * z / checked)
        interval = f" [95% interval {100 * low:.0f}-{100 * high:.0f}%]"
    print(f"{name:12s} {module:44s} {score:5.1f}%{interval} ({detected}/{checked}; {detail}) in {seconds} s")


def main(results: str, survivors_file: str, equivalents_file: str, name: str) -> None:
    _counts, checked, detected = tally(results)
    known = reasons(Path(equivalents_file))
    left = [mutant for mutant, function, plus in survivors(Path(survivors_file).read_text(encoding="utf-8")) if (function, plus) not in known]
    equivalent = checked - detected - len(left)
    denominator = checked - equivalent
    score = 100.0 * detected / denominator if denominator else float("nan")
    print(f"{name:12s} without {equivalent} classified equivalent: {score:5.1f}% ({detected}/{denominator}); unclassified survivors: {len(left)}")
    for mutant in left:
        print(f"{'':12s}   unclassified: {mutant}")


USAGE = "--raw RESULTS NAME MODULE SECONDS | RESULTS SURVIVORS EQUIVALENTS NAME | --list SURVIVORS EQUIVALENTS"


def cli(args: list[str]) -> int:
    mode = {"--raw": (raw, 4), "--list": (listing, 2)}.get(args[0] if args else "", (main, 4))
    function, count = mode
    operands = args[1:] if function is not main else args
    if len(operands) != count:
        print(f"Error: expected {count} arguments; usage: mutation_equivalents.py {USAGE}", file=sys.stderr)
        return 2
    try:
        function(*operands)
    except FileNotFoundError as err:
        print(f"Error: {err.filename} does not exist; run scripts/mutation.sh first (it writes results and survivors)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
