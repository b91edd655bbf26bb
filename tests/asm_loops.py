"""The innermost FMA loops of a kernel's assembly, for tests of the k-loop's structure."""
from __future__ import annotations

import re


def k_loops(asm: str) -> list[list[str]]:
    """The bodies of the assembly's innermost loops that run FMAs (label .. backward jump)."""
    lines = asm.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines)
              if (m := re.match(r"^(\.LBB\S+):", line))}
    loops = []
    for i, line in enumerate(lines):
        m = re.match(r"\s+j\w+\s+(\.LBB\S+)", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            body = lines[labels[m.group(1)]:i + 1]
            if sum("vfmadd" in x for x in body) >= 4 and \
                    not any(re.match(r"^\.LBB\S+:", x) for x in body[1:]):
                loops.append(body)
    return loops
