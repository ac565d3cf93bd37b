"""Replace one section of BENCHMARKS.md, between `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->`, with the text read from stdin; every other line is kept as it is.
A section that does not exist yet is appended at the end.

usage: python3 section.py BENCHMARKS.md NAME < new-content.md
"""

import sys


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end):]
        return before + block + after
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main() -> None:
    path, name = sys.argv[1], sys.argv[2]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(replace_section(text, name, sys.stdin.read()))


if __name__ == "__main__":
    main()
