"""Files stay small: one job each (soft cap ~400 lines, hard cap 600)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_source_file_passes_600_lines():
    too_long = {}
    for folder in ("graphrnn", "compiler", "runtime"):
        for path in (ROOT / folder).glob("*.py"):
            lines = path.read_text().count("\n")
            if lines > 600:
                too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"split these by job: {too_long}"
