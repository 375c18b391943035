"""Rewrite the reliability table of README.md from chaos-results/latest.json.

`python tests/chaos/report.py` (run by `make test-chaos` after the tests) replaces what lies
between `<!-- chaos:start -->` and `<!-- chaos:end -->` in the top-level README.md and nothing
else. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "chaos-results" / "latest.json"
README = ROOT / "README.md"
START, END = "<!-- chaos:start -->", "<!-- chaos:end -->"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _numbers(numbers: dict) -> str:
    parts = []
    for key, value in numbers.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
            parts.append(f"{key.replace('_', ' ')}: {value}")
        else:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return "; ".join(parts)


def render(results: dict) -> str:
    rows = results.get("scenarios", [])
    lines = [
        f"Last written {results.get('written_at', '?')} on lane `{results.get('profile', '?')}`, "
        f"background load {results.get('load_rate_per_s', '?')} orders/s, "
        f"STOCKFLOW_CHAOS_SEED={results.get('seed', '?')}. "
        "`fast` rows also run in `make test`.",
        "",
        "| scenario | injected | invariants checked | result | numbers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        result = row.get("result", "?")
        if row.get("duration_s") is not None:
            result += f" ({row['duration_s']} s, {row.get('finished_at', '?')[:16]})"
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"{row.get('title', row['scenario'])} [{row.get('marker', '?')}]",
                    row.get("injected") or "(not reached)",
                    ", ".join(row.get("checks", [])) or "(not reached)",
                    result,
                    _numbers(row.get("numbers", {})),
                )
            )
            + " |"
        )
    total_orders = sum(int(r.get("numbers", {}).get("orders", 0) or 0) for r in rows)
    passed = sum(1 for r in rows if r.get("result") == "passed")
    lines += [
        "",
        f"{passed} of {len(rows)} scenarios passed; {total_orders} orders checked in total.",
    ]
    return "\n".join(lines)


def rewrite(readme: str, table: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    if not RESULTS.exists():
        print(f"no {RESULTS.relative_to(ROOT)}: run `make test-chaos` first", file=sys.stderr)
        return 1
    table = render(json.loads(RESULTS.read_text()))
    README.write_text(rewrite(README.read_text(), table))
    print(f"README.md reliability table rewritten from {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
