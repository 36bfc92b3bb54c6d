"""scripts/mutation_equivalents.py: the score without the survivors classified as equivalent mutants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "mutation_equivalents.py"
TABLE = ROOT / "scripts" / "mutation-equivalents.tsv"


def test_every_classification_names_a_function_a_line_and_a_reason() -> None:
    rows = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    assert rows
    for row in rows:
        function, line, reason = row.split("\t")
        assert function.startswith("csa_cli.") and "__mutmut_" not in function and line.strip() and len(reason) > 20, row


def _survivors_and_table(tmp_path: Path, second: str, table: str) -> tuple[Path, Path]:
    """A survivors file with m.x_f__mutmut_2 (y = a[+1]) and `second`__mutmut_1 (return 2), and a table."""
    survivors = tmp_path / "survivors.txt"
    survivors.write_text(
        "### m.x_f__mutmut_2 (survived)\n--- a\n+++ b\n-    y = a[-1]\n+    y = a[+1]\n\n"
        f"### {second}__mutmut_1 (survived)\n--- a\n+++ b\n-    return 1\n+    return 2\n\n"
    )
    table_file = tmp_path / "eq.tsv"
    table_file.write_text(table)
    return survivors, table_file


def _run(*args: Path | str) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=True).stdout


def test_equivalent_survivors_leave_the_denominator_and_the_others_are_named(tmp_path: Path) -> None:
    results = tmp_path / "results.txt"
    results.write_text(
        "    m.x_f__mutmut_1: killed\n    m.x_f__mutmut_2: survived\n    m.x_g__mutmut_1: survived\n"
        "    m.x_g__mutmut_2: timeout\n    m.x_g__mutmut_3: not checked\n"
    )
    survivors, table = _survivors_and_table(tmp_path, "m.x_g", "# comment\nm.x_f\ty = a[+1]\tthe same axis of a 2-D array\nm.x_g\treturn 3\tanother line\n")
    out = _run(results, survivors, table, "mod")
    # 4 checked (killed, timeout, 2 survived), 1 classified equivalent: 2 detected of 3
    assert out.splitlines()[0].split() == ["mod", "without", "1", "classified", "equivalent:", "66.7%", "(2/3);", "unclassified", "survivors:", "1"]
    assert out.splitlines()[1].strip() == "unclassified: m.x_g__mutmut_1"


def test_the_list_gives_each_survivor_its_line_and_classification(tmp_path: Path) -> None:
    survivors, table = _survivors_and_table(tmp_path, "m.x\u01c1C\u01c1g", "m.x_f\ty = a[+1]\tthe same axis of a 2-D array\n")
    out = _run("--list", survivors, table)
    assert out.splitlines() == [
        "- `f__mutmut_2`: `y = a[+1]`: equivalent: the same axis of a 2-D array",
        "- `C.g__mutmut_1`: `return 2`: unclassified",
    ]


def test_wrong_arguments_or_a_missing_file_are_a_one_line_error(tmp_path: Path) -> None:
    for args in (["--list"], [], ["--list", str(tmp_path / "none.txt"), str(TABLE)]):
        done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: "), done.stderr
    assert "none.txt does not exist" in done.stderr
