#!/usr/bin/env python3
"""Writes the status column of docs/conformance.md from a test run.

Every table row of docs/conformance.md whose header is `| case | scenario | test | status |`
names the tests that run the case (`module::function` in backticks, `module::*` for every
test of a module, "the same test" for the row above's tests, or an alias declared in the file
as `<!-- alias K = module::function -->`). A row whose test cell starts with `*n/a*` or
`*not yet*` says why it is not run and keeps an empty status.

For every other row the status becomes:
  pass      every named test passed in the run
  FAILED    one of them failed
  not run   one of them is not in the run (a renamed or removed test)

The summary between the `generated` markers says which run it was. The file is only rewritten
when a status changed (or it has no summary yet), so a run that changes nothing leaves it alone.

usage:
  scripts/conformance.py --log TEST_OUTPUT [--doc docs/conformance.md] [--check]

TEST_OUTPUT is what `cargo test` printed (lines `test module::function ... ok`). With --check
nothing is written: the exit code is 1 when the file's statuses differ from the run's, or when a
row names no test; 0 otherwise.
"""

import argparse
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HEADER = re.compile(r"^\|\s*case\s*\|\s*scenario\s*\|\s*test\s*\|\s*status\s*\|\s*$")
RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
ALIAS = re.compile(r"<!--\s*alias\s+(\S+)\s*=\s*(\S+)\s*-->")
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_*][A-Za-z0-9_*:]*)`")
SKIPPED = ("*n/a*", "*not yet*")
START, END = "<!-- generated:start -->", "<!-- generated:end -->"


def results(log: str) -> dict:
    """Test name -> ok / FAILED / ignored, from cargo test output (the api suite's names)."""
    found = {}
    for line in log.splitlines():
        match = RESULT.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def split_row(line: str) -> list:
    """The cells of a markdown table row (a `|` inside backticks does not split)."""
    cells, current, in_code = [], [], False
    for char in line.strip()[1:-1]:
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
    cells.append("".join(current))
    return cells


def named_tests(cell: str, aliases: dict) -> list:
    names = [f"{module}::{function}" for module, function in NAME.findall(cell)]
    for alias, target in aliases.items():
        if "::" in target and re.search(rf"`{re.escape(alias)}`", cell):
            names.append(target)
    # `sc::x` style prefixes declared as aliases of a module
    expanded = []
    for name in names:
        module, _, rest = name.partition("::")
        expanded.append(f"{aliases[module]}::{rest}" if module in aliases and "::" not in aliases[module] else name)
    return expanded


def status_of(tests: list, run: dict) -> str:
    verdicts = []
    for test in tests:
        if test.endswith("::*"):
            prefix = test[:-1]
            matching = [v for name, v in run.items() if name.startswith(prefix)]
            verdicts.append("not run" if not matching else ("FAILED" if "FAILED" in matching else "pass"))
        else:
            verdict = run.get(test)
            verdicts.append({"ok": "pass", "FAILED": "FAILED"}.get(verdict, "not run"))
    if "FAILED" in verdicts:
        return "FAILED"
    if "not run" in verdicts:
        return "not run"
    return "pass"


def regenerate(text: str, run: dict) -> tuple:
    """(new text, problems, counts)."""
    aliases = dict(ALIAS.findall(text))
    lines = text.split("\n")
    in_table, previous, problems = False, [], []
    counts = {"pass": 0, "FAILED": 0, "not run": 0, "n/a": 0}
    for index, line in enumerate(lines):
        if HEADER.match(line):
            in_table, previous = True, []
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if set(line.replace("|", "").strip()) <= {"-", " "}:
            continue
        cells = split_row(line)
        if len(cells) != 4:
            problems.append(f"line {index + 1}: {len(cells)} cells, 4 expected")
            continue
        case, scenario, test, _ = cells
        if test.strip().startswith(SKIPPED):
            counts["n/a"] += 1
            status = ""
        else:
            tests = named_tests(test, aliases)
            if "the same" in test:
                tests = tests + previous
            if not tests:
                problems.append(f"line {index + 1} ({case.strip()}): names no test")
                status = "not run"
            else:
                previous = tests
                status = status_of(tests, run)
            counts[status] += 1
        lines[index] = f"|{case}|{scenario}|{test}| {status} |" if status else f"|{case}|{scenario}|{test}| |"
    return "\n".join(lines), problems, counts


def with_summary(text: str, counts: dict, total_tests: int) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = (f"{START}\nStatuses generated by `scripts/conformance.py` from the test run of "
               f"`{commit}` ({at}, {total_tests} tests): {counts['pass']} rows pass, "
               f"{counts['FAILED']} failed, {counts['not run']} not run, {counts['n/a']} not "
               f"applicable or not yet (with the reason).\n{END}")
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        return before + summary + after
    title, _, body = text.partition("\n")
    return f"{title}\n\n{summary}\n{body}"


def statuses(text: str) -> list:
    """(case, status) of every row of the case tables."""
    found, in_table = [], False
    for line in text.split("\n"):
        if HEADER.match(line):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if not in_table or set(line.replace("|", "").strip()) <= {"-", " "}:
            continue
        cells = split_row(line)
        if len(cells) == 4:
            found.append((cells[0].strip(), cells[3].strip()))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--doc", default="docs/conformance.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    run = results(Path(args.log).read_text(errors="replace"))
    doc = Path(args.doc)
    text = doc.read_text()
    new, problems, counts = regenerate(text, run)
    for problem in problems:
        print(f"conformance: {problem}", file=sys.stderr)
    if args.check:
        differ = [
            (case, before, after)
            for (case, before), (_, after) in zip(statuses(text), statuses(new))
            if before != after
        ]
        for case, before, after in differ:
            print(f"conformance: {case}: the file says {before or '(none)'!r}, "
                  f"the run says {after or '(none)'!r}", file=sys.stderr)
        if differ or problems:
            print("conformance: run scripts/test.sh (it rewrites docs/conformance.md) and commit it",
                  file=sys.stderr)
            return 1
        print(f"conformance: docs/conformance.md agrees with the run ({counts['pass']} rows pass)")
        return 0
    if statuses(text) == statuses(new) and START in text:
        # nothing the run changed: the file (and the run it names) stays as committed
        print(f"conformance: {doc} unchanged: {counts}")
        return 1 if problems else 0
    doc.write_text(with_summary(new, counts, len(run)))
    print(f"conformance: {doc} written: {counts}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
