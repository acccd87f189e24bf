#!/usr/bin/env python3
"""Code-shape figures of the workspace: lines per crate and the longest functions outside
tests. `--check N` exits non-zero when a non-test function is longer than N lines.

Functions are found by their `fn` line and matching braces (comments and string literals
with braces are rare enough here to ignore); `#[cfg(test)]` modules, `tests/` and
`benches/` count as tests. Line counts include blank and comment lines."""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = {"target", "vendor", "fuzz", ".git", ".cache", "runs"}
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def rust_files():
    for path in sorted(ROOT.rglob("*.rs")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP:
            continue
        yield rel, path.read_text().splitlines()


def test_ranges(lines):
    """Line ranges of `#[cfg(test)]` items (usually `mod tests { ... }`)."""
    ranges = []
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]":
            end = block_end(lines, i + 1)
            if end is not None:
                ranges.append((i, end))
    return ranges


def block_end(lines, start):
    depth, opened = 0, False
    for j in range(start, len(lines)):
        code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split("//")[0])
        code = re.sub(r"'(\\.|[^'\\])'", "''", code)
        depth += code.count("{") - code.count("}")
        if "{" in code:
            opened = True
        if opened and depth <= 0:
            return j
        if not opened and code.rstrip().endswith(";"):
            return None
    return None


def functions():
    for rel, lines in rust_files():
        is_test_file = (rel.parts[0] == "tests" and "src" not in rel.parts) or "benches" in rel.parts or rel.name.endswith("_tests.rs")
        tests = test_ranges(lines)
        for i, line in enumerate(lines):
            m = FN.match(line)
            if not m:
                continue
            end = block_end(lines, i)
            if end is None:
                continue
            in_test = is_test_file or any(a <= i <= b for a, b in tests)
            yield rel, i + 1, m.group(6), end - i + 1, in_test


PUB_ITEM = re.compile(r"^\s*pub\s+(fn|struct|enum|trait|type|const|static|mod|use)?\s*[\w(]")


def undocumented_pub_items():
    """`pub` items and fields of non-test library code with no `///` above them (attributes
    in between allowed); `pub use` re-exports and `pub(crate)` items are not counted. A
    heuristic of the source (the compiler's `missing_docs` only sees items reachable from
    a crate's root), kept to compare trees."""
    counts = {}
    for rel, lines in rust_files():
        if rel.parts[0] in ("xtask", "fuzz") or "tests" in rel.parts[1:] or rel.name.endswith("_tests.rs"):
            continue
        if rel.parts[0] == "tests" and "src" not in rel.parts:
            continue
        tests = test_ranges(lines)
        for i, line in enumerate(lines):
            stripped = line.strip()
            if not stripped.startswith("pub ") or stripped.startswith("pub use"):
                continue
            if any(a <= i <= b for a, b in tests):
                continue
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#["):
                j -= 1
            if j < 0 or not lines[j].strip().startswith("///"):
                counts[rel.parts[0]] = counts.get(rel.parts[0], 0) + 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", type=int, help="fail when a non-test function exceeds this many lines")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    crates = {}
    for rel, lines in rust_files():
        crates[rel.parts[0]] = crates.get(rel.parts[0], 0) + len(lines)
    print("lines per crate:")
    for crate, n in sorted(crates.items()):
        print(f"  {crate:12} {n:6}")
    print("pub items without a doc comment (heuristic):")
    for crate, n in sorted(undocumented_pub_items().items()):
        print(f"  {crate:12} {n:6}")
    fns = [f for f in functions() if not f[4]]
    fns.sort(key=lambda f: -f[3])
    print(f"longest non-test functions (of {len(fns)}):")
    for rel, line, name, length, _ in fns[: args.top]:
        print(f"  {length:4}  {name}  ({rel}:{line})")
    if args.check is not None:
        long = [f for f in fns if f[3] > args.check]
        if long:
            print(f"error: {len(long)} non-test function(s) over {args.check} lines", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
