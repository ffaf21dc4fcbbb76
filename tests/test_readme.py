"""The README a newcomer reads: its usage commands run (in smoke mode, in a copy of the repository and of
results/), its generated tables are current, and nothing committed is touched."""
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.paths import REPO_ROOT
from labkit.report import readme_with_generated
from labkit.reporting.markdown import replace_generated
from labkit.runs.store import RESERVED_NAMES

README = REPO_ROOT / "README.md"


def usage_commands() -> list[str]:
    """The commands of the README's 'Usage' section, without their comments."""
    section = README.read_text().split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_usage_command_of_the_readme_runs(tmp_path):
    repo = tmp_path / "repo"
    for name in ("labkit", "notebooks", "scripts"):
        shutil.copytree(REPO_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "pyproject.toml", "report.md"):
        shutil.copy(REPO_ROOT / name, repo / name)
    results = tmp_path / "results"          # the committed runs, weights linked rather than copied
    shutil.copytree(REPO_ROOT / "results", results,
                    copy_function=lambda src, dst: os.symlink(src, dst) if src.endswith(".pt") else shutil.copy2(src, dst))
    committed = tree_digest(results)
    env = {**os.environ, "LABKIT_SMOKE": "1", "LABKIT_RESULTS": str(results),
           "LABKIT_CHECKPOINTS": str(tmp_path / "checkpoints"), "PYTHONPATH": str(repo)}
    commands = usage_commands()
    assert len(commands) >= 8 and any(c.startswith("papermill") for c in commands)
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "python":
            argv[0] = sys.executable
        done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"
    changed = {name for name, digest in tree_digest(results).items() if committed.get(name, digest) != digest}
    runs_changed = {name for name in changed if name.split("/")[0] not in RESERVED_NAMES}
    assert not runs_changed, f"committed runs changed: {runs_changed}"
    kept = {n for n in committed if n.split("/")[0] not in RESERVED_NAMES}
    assert kept <= set(tree_digest(results)), f"committed run files gone: {kept - set(tree_digest(results))}"


def test_the_readme_tables_are_generated_from_the_code_and_the_runs():
    text = README.read_text()
    assert readme_with_generated(text, REPO_ROOT / "results") == text, \
        "the README's results, time or compile block is stale: run python -m labkit.report"
    spec = __import__("importlib").util.spec_from_file_location("build", REPO_ROOT / "scripts" / "build_notebooks.py")
    build = __import__("importlib").util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert replace_generated(text, "settings", build.settings_table()) == text, \
        "the README's settings table is stale: run python scripts/build_notebooks.py"


def test_the_readme_opens_with_the_results_then_the_set_up():
    headings = re.findall(r"^## (.+)$", README.read_text(), re.M)
    assert headings[:4] == ["Results", "Set-up", "Three ways to use it", "Usage"]


@pytest.mark.parametrize("missing", ["results", "times"])
def test_a_readme_without_its_markers_is_a_clear_error(missing):
    with pytest.raises(ValueError, match=f"<!-- generated: {missing} -->"):
        replace_generated("no markers here", missing, "x")
