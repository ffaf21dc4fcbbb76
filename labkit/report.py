"""Write report.md and its figures (results/figures/) from results/ alone.

    python -m labkit.report [--results DIR] [--output report.md] [--pdf]

Only the committed results/ rebuild the committed report.md and the README's tables; a report of other
results (--results, env LABKIT_RESULTS, smoke mode) goes to report.md in their root unless --output says.

`--pdf` also renders the report, with its figures, as a PDF beside it through headless Chromium
(Debian's `chromium`, the browser the browser test drives); report.md stays the committed source.

Regenerating without new results gives an identical file: nothing in it depends on the time
or the machine that renders it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import mistune

from labkit.paths import REPO_ROOT, results_root
from labkit.reporting.markdown import build, readme_compile, readme_results, readme_times, replace_generated
from labkit.reporting.select import load_benchmarks, load_every_run, on_common_data

REPORT, README = REPO_ROOT / "report.md", REPO_ROOT / "README.md"


def readme_with_generated(text: str, root: Path) -> str:
    """`text`, the README, with its generated blocks rebuilt: the results and time tables from the runs
    in `root`, and what torch.compile gained from its benchmarks."""
    every_run, _ = on_common_data(load_every_run(root))
    text = replace_generated(text, "results", readme_results(every_run))
    text = replace_generated(text, "times", readme_times(every_run, root))
    return replace_generated(text, "compile", readme_compile(load_benchmarks(root)))


def update_readme(root: Path) -> None:
    README.write_text(readme_with_generated(README.read_text(), root))


PAGE_STYLE = """<style>
body { font-family: sans-serif; font-size: 10.5pt; line-height: 1.4; max-width: 60em; margin: auto; }
table { border-collapse: collapse; font-size: 8.5pt; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 5px; }
img { max-width: 100%; }
code { font-size: 9pt; }
</style>"""


def write_pdf(report: Path, pdf: Path) -> None:
    """Render `report` (markdown) with its figures to `pdf` through headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("--pdf needs Chromium: apt-get install chromium (or render report.md another way)")
    page = report.with_name(f".{report.stem}.print.html")     # beside the report, so its figure links resolve
    renderer = mistune.create_markdown(plugins=["table"])
    page.write_text(f"<!doctype html><meta charset='utf-8'>{PAGE_STYLE}{renderer(report.read_text())}")
    try:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                               f"--print-to-pdf={pdf.resolve()}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=300)
    finally:
        page.unlink(missing_ok=True)
    if done.returncode != 0 or not pdf.is_file():
        raise RuntimeError(f"Chromium could not print {report} to {pdf}: {done.stderr[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="results root (default: results/)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the report's path (default: report.md; for other results, report.md in their root)")
    parser.add_argument("--pdf", action="store_true", help="also write the report as a PDF beside it (needs Chromium)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")   # files only: no window, whatever backend the machine would pick

    root = args.results or results_root()
    committed = root.resolve() == (REPO_ROOT / "results").resolve()
    # other results (LABKIT_RESULTS, --results, smoke mode) never overwrite the committed report unless told to
    output = args.output or (REPORT if committed else root / "report.md")
    build(root, output)
    print(f"wrote {output}")
    if args.pdf:
        try:
            write_pdf(output, output.with_suffix(".pdf"))
        except (FileNotFoundError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {output.with_suffix('.pdf')}")
    if output == REPORT and committed:
        update_readme(root)
        print(f"updated the results, time and compile blocks of {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
