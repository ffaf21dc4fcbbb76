"""Write report.md and its figures (results/figures/) from results/ alone.

    python -m labkit.report [--results DIR] [--output report.md]

Regenerating without new results gives an identical file: nothing in it depends on the time
or the machine that renders it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from labkit.paths import REPO_ROOT, results_root
from labkit.reporting.markdown import build, readme_results, readme_times, replace_generated
from labkit.reporting.select import load_every_run, on_common_data

REPORT, README = REPO_ROOT / "report.md", REPO_ROOT / "README.md"


def update_readme(root: Path) -> None:
    """The README's generated results and time tables, from the runs in `root`."""
    every_run, _ = on_common_data(load_every_run(root))
    text = replace_generated(README.read_text(), "results", readme_results(every_run))
    README.write_text(replace_generated(text, "times", readme_times(every_run, root)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="results root (default: results/)")
    parser.add_argument("--output", type=Path, default=REPORT, help="the report's path (default: report.md)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")   # files only: no window, whatever backend the machine would pick

    root = args.results or results_root()
    build(root, args.output)
    print(f"wrote {args.output}")
    if args.output == REPORT and (args.results is None or root.resolve() == (REPO_ROOT / "results").resolve()):
        update_readme(root)
        print(f"updated the results and time tables of {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
