"""Tidy an executed notebook before it is kept in results/: drop what only made sense while it ran
and name no machine's paths. Nothing a run printed or plotted is changed.

    python -m labkit.notebook.tidy EXECUTED.ipynb [KEPT.ipynb]     # in place without KEPT

- empty outputs (a cleared progress line) and saved progress-bar widgets (tqdm, frozen at the
  state they had when the notebook was saved) are removed, with the widget state they need;
- absolute paths, in text outputs (stream, plain, HTML, markdown, tracebacks), the injected parameters
  and papermill's metadata, are written relative: the repository's folder (this clone, or another
  clone's before its results/ or notebooks/) becomes nothing, any labkit cache folder
  `~/.cache/labkit`, and a data path beside the repository `../shared/...`. The widget state of
  the explorer, when the notebook shows it, is kept whole.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

from labkit.paths import REPO_ROOT, cache_dir
from labkit.storage import write_atomic

WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|.*\| *\d+/\d+")   # tqdm's text form: ' 0%|          | 0/351 [00:00<?, ?it/s]'
START = r"(?<![\w.~:/])"   # an absolute path starts here: not inside a word, a URL or another path
CACHE = re.compile(START + r"/[\w./-]*?/\.cache/labkit(?=/|\b)")            # any machine's labkit cache
CLONE = re.compile(START + r"/(?:[\w.-]+/)*?(?=(?:results|notebooks)/)")      # a clone's root before its folders


def is_leftover(output: dict) -> bool:
    if output.get("output_type") != "display_data":
        return False
    data = output.get("data", {})
    text = "".join(data.get("text/plain", ""))
    return (WIDGET in data and PROGRESS.search(text) is not None) or (set(data) <= {"text/plain"} and not text.strip())


def relative(text: str) -> str:
    """Absolute paths of any machine as paths that mean the same on any clone."""
    if cache_dir().is_absolute():
        text = text.replace(str(cache_dir()), "~/.cache/labkit")
    text = CACHE.sub("~/.cache/labkit", text)
    text = text.replace(str(REPO_ROOT.parent / "shared"), "../shared").replace(str(REPO_ROOT) + "/", "")
    return CLONE.sub("", text)


def tidy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in notebook.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = relative(cell.source)
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if not is_leftover(o)]
        for output in cell.outputs:
            if "text" in output:
                output["text"] = relative(output["text"])
            if "traceback" in output:
                output["traceback"] = [relative(line) for line in output["traceback"]]
            for kind in ("text/plain", "text/html", "text/markdown"):
                if kind in output.get("data", {}):
                    output["data"][kind] = relative(output["data"][kind])
    papermill = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if isinstance(papermill.get(key), str):
            papermill[key] = relative(papermill[key])
    for key, value in papermill.get("parameters", {}).items():
        if isinstance(value, str):
            papermill["parameters"][key] = relative(value)
    views = any(WIDGET in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    if not views:
        notebook.metadata.pop("widgets", None)
    return notebook


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not 1 <= len(args) <= 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    source = Path(args[0])
    if not source.is_file():
        print(f"error: no notebook at {source}", file=sys.stderr)
        return 2
    notebook = tidy(nbformat.read(source, as_version=4))
    write_atomic(Path(args[-1]), nbformat.writes(notebook).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
