"""`make bench`: runs every benchmark in bench/ and tables their figures against the goals.

Each bench/<name>.py prints its own table and, as its last line, one JSON object with its figures
(`{"bench": "envelope", "ratio": 0.93, ...}`). This runs each as a subprocess (one at a time: they
measure wall time), echoes its output, parses that last line and writes

- bench/results.json: per bench its status, seconds, figures, and each goal with whether it was met;
- bench/results.md: a Markdown table `bench | figure | value | goal | met?`.

A bench that is missing, exits non-zero, times out or prints no JSON is a row marked failed with its
error; the others still run. The goals are the benches' own constants (read from their source, so the
two never disagree), or a goal the bench states in its JSON line.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--quick] [--timeout SECONDS]

`--quick` passes smaller sizes to the benches that take them (only options a bench's --help lists), for
a smoke run; its figures are noisier and marked quick. `--only` runs just those benches and merges their
rows into an existing results.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "results.md"
DEFAULT_TIMEOUT = 3600.0
#: Benchmarks run against the dev servers: development, said explicitly (unset means production, which
#: refuses their plaintext endpoints and development secrets).
BENCH_ENVIRONMENT = {"LIKENESS_ENV": "development"}


@dataclass(frozen=True)
class Goal:
    figure: str
    op: str  # ">=", "<" or "<="
    constant: str | None  # the bench's module-level constant holding the value
    default: float  # used when the constant cannot be read

    def met(self, value: float, target: float) -> bool:
        if self.op == "<=":
            return value <= target
        return value >= target if self.op == ">=" else value < target


#: The goals set by the issues that built each bench (the values live in the benches).
GOALS: dict[str, list[Goal]] = {
    "envelope": [Goal("ratio", ">=", "GOAL", 0.8)],
    "ingest": [
        Goal("ratio", ">=", "GOAL_RATIO", 3.0),
        Goal("sandbox_added_p50_ms", "<", "GOAL_SANDBOX_MS", 15.0),
        Goal("peak_rss_mb_50mp", "<", "GOAL_RSS_MB", 600.0),
    ],
    "trainer": [
        Goal("vs_naive", ">=", "GOAL_VS_NAIVE", 1.5),
        Goal("of_ceiling", ">=", "GOAL_OF_CEILING", 0.9),
    ],
    "renderer": [
        Goal("of_ceiling", ">=", "GOAL_OF_CEILING", 0.85),
        Goal("vs_naive", ">=", "GOAL_VS_NAIVE", 3.0),
        Goal("switch_vs_load", ">=", "GOAL_SWITCH_VS_LOAD", 10.0),
    ],
    "erasure": [
        Goal("key_destroyed_p99_s", "<", "GOAL_KEY_P99", 1.0),
        Goal("purge_complete_p99_s", "<", "GOAL_PURGE_P99", 10.0),
    ],
    "gateway": [Goal("of_ceiling", ">=", "GOAL_OF_CEILING", 0.6)],
    "grpc_hop": [Goal("added_ms_p50", "<", "GOAL_ADDED_MS", 1.0)],
    "manifest": [Goal("ratio", ">=", "GOAL", 0.9)],
    "quota_admission": [
        Goal("of_tenant_rate", ">=", "GOAL_OF_TENANT_RATE", 1.0),
        Goal("overshoot", "<=", "GOAL_OVERSHOOT", 0.0),
    ],
}

#: Benches whose JSON line states each goal (`"goals": {figure: target}`), with the comparison they all
#: mean: their judged figures are listed once, in the bench. Cost curves: each figure at the largest size
#: over the smallest (100k / 1k), flat or better (`bench/scale.py`'s JUDGED and GOAL_RATIO).
STATED_GOALS = {"scale": "<="}

#: Smaller sizes for --quick, per option; a bench gets only the ones its --help lists.
QUICK_OPTIONS: dict[str, dict[str, str]] = {
    "envelope": {"--mib": "16", "--rounds": "3"},
    "ingest": {"--rounds": "3"},
    "trainer": {"--rounds": "1", "--steps": "20"},
    "renderer": {"--subjects": "2", "--images": "4", "--rounds": "1"},
    "erasure": {"--rounds": "5", "--concurrent": "10"},
    "gateway": {"--quick": ""},
    "grpc_hop": {"--calls": "500", "--rounds": "1"},
    "manifest": {"--mib": "256", "--rounds": "2"},
    "scale": {"--quick": ""},
    "quota_admission": {"--rounds": "2", "--burst": "100"},
}
_NOT_BENCHES = {"run_all"}


def discover() -> list[str]:
    """Every bench: bench/*.py, and the ones a goal is set for even if their file is missing."""
    found = {path.stem for path in BENCH_DIR.glob("*.py") if path.stem not in _NOT_BENCHES}
    return sorted(found | set(GOALS) | set(STATED_GOALS))


def module_constants(path: Path) -> dict[str, float]:
    """Numeric module-level constants of a bench (`GOAL_RATIO = 3.0`), read without importing it."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return {}
    constants: dict[str, float] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, int | float):
                constants[node.targets[0].id] = float(value.value)
    return constants


def quick_args(name: str, script: Path) -> list[str]:
    wanted = QUICK_OPTIONS.get(name, {})
    if not wanted:
        return []
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300, check=False
    ).stdout
    args: list[str] = []
    for option, value in wanted.items():
        if option in help_text:
            args += [option] + ([value] if value else [])
    return args


def run_bench(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Runs one bench, echoing its output; returns its entry for results.json."""
    script = BENCH_DIR / f"{name}.py"
    entry: dict[str, Any] = {"bench": name, "status": "failed", "quick": quick, "figures": {}}
    if not script.is_file():
        entry["error"] = f"bench/{name}.py not found"
        return entry
    argv = [sys.executable, str(script), *(quick_args(name, script) if quick else [])]
    entry["command"] = " ".join(["python", f"bench/{name}.py", *argv[2:]])
    print(f"\n=== {entry['command']}", flush=True)
    started = time.monotonic()
    last = ""
    try:
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, cwd=BENCH_DIR.parent, env=os.environ | BENCH_ENVIRONMENT
        ) as process:
            assert process.stdout is not None
            deadline = started + timeout
            for line in process.stdout:
                print(line, end="", flush=True)
                if line.strip():
                    last = line.strip()
                if time.monotonic() > deadline:
                    process.kill()
                    raise subprocess.TimeoutExpired(argv, timeout)
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        entry["error"] = f"timed out after {timeout:.0f}s"
        return entry
    entry["seconds"] = round(time.monotonic() - started, 1)
    if code != 0:
        entry["error"] = f"exited with code {code}"
        return entry
    try:
        figures = json.loads(last)
    except json.JSONDecodeError:
        entry["error"] = f"its last line is not JSON: {last[:120]!r}"
        return entry
    if not isinstance(figures, dict):
        entry["error"] = "its last line is not a JSON object"
        return entry
    entry["status"] = "ok"
    entry["figures"] = {key: value for key, value in figures.items() if key not in ("bench", "goal", "goals")}
    entry["goals"] = judge(name, figures, module_constants(script))
    return entry


def judge(name: str, figures: dict[str, Any], constants: dict[str, float]) -> list[dict[str, Any]]:
    """Each goal of the bench with its target and whether the figure meets it (None: figure missing)."""
    stated_goals = figures.get("goals")
    stated: dict[str, Any] = stated_goals if isinstance(stated_goals, dict) else {}
    judged = []
    goals = GOALS.get(name, [])
    if name in STATED_GOALS:
        goals = [
            Goal(str(figure), STATED_GOALS[name], None, float(target)) for figure, target in stated.items()
        ]
    for goal in goals:
        target = goal.default
        if goal.constant is not None and goal.constant in constants:
            target = constants[goal.constant]
        if goal.figure in stated:
            target = float(stated[goal.figure])
        elif goal.figure == "ratio" and isinstance(figures.get("goal"), int | float):
            target = float(figures["goal"])
        value = figures.get(goal.figure)
        met = goal.met(float(value), target) if isinstance(value, int | float) else None
        judged.append({"figure": goal.figure, "op": goal.op, "goal": target, "value": value, "met": met})
    return judged


def markdown(entries: list[dict[str, Any]], generated_at: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated {generated_at} by `make bench` (`bench/run_all.py`) on {_machine()['summary']}.",
        "Ratios are measured against a baseline run side by side in the same process.",
        "",
        "| bench | figure | value | goal | met? |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        name = entry["bench"] + (" (quick)" if entry.get("quick") else "")
        if entry["status"] != "ok":
            lines.append(f"| {name} | — | — | — | failed: {entry.get('error', 'unknown error')} |")
            continue
        goals = {goal["figure"]: goal for goal in entry.get("goals", [])}
        for figure, value in entry["figures"].items():
            goal = goals.pop(figure, None)
            if goal is None:
                lines.append(f"| {name} | {figure} | {value} | — | — |")
            else:
                verdict = "yes" if goal["met"] else "**no**"
                lines.append(f"| {name} | {figure} | {value} | {goal['op']} {goal['goal']:g} | {verdict} |")
        for goal in goals.values():  # a goal whose figure the bench did not print
            lines.append(f"| {name} | {goal['figure']} | missing | {goal['op']} {goal['goal']:g} | **no** |")
    return "\n".join(lines) + "\n"


def _machine() -> dict[str, Any]:
    cpus = os.cpu_count() or 0
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": cpus,
        "summary": f"{platform.machine()}, {cpus} CPUs, Python {platform.python_version()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per bench")
    args = parser.parse_args()

    names = discover()
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        parser.error(f"unknown bench(es) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = args.only or names
    entries = {name: run_bench(name, args.quick, args.timeout) for name in chosen}

    if args.only and RESULTS_JSON.is_file():
        try:
            earlier = json.loads(RESULTS_JSON.read_text()).get("benches", [])
        except (json.JSONDecodeError, AttributeError):
            earlier = []
        for entry in earlier:
            entries.setdefault(entry["bench"], entry)
    ordered = [entries[name] for name in sorted(entries)]
    generated_at = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS_JSON.write_text(
        json.dumps({"generated_at": generated_at, "machine": _machine(), "benches": ordered}, indent=2) + "\n"
    )
    table = markdown(ordered, generated_at)
    RESULTS_MD.write_text(table)
    print("\n" + table)
    print(
        f"wrote {RESULTS_JSON.relative_to(BENCH_DIR.parent)} and {RESULTS_MD.relative_to(BENCH_DIR.parent)}"
    )
    failed = [entry["bench"] for entry in ordered if entry["status"] != "ok" and entry["bench"] in chosen]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
