"""Root conftest: the notebooks under nbval run in smoke mode and write into a temporary
results root, and the session fails if anything under the real results/ changed. On xdist workers
(`-n 2 --dist loadfile`: a whole file, a notebook's cells in one kernel, on one worker) each uses one thread."""
import os
import tempfile
from pathlib import Path

os.environ["LABKIT_SMOKE"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share the two cores: one thread each, for every subprocess and kernel they start too
    os.environ["OMP_NUM_THREADS"] = "1"
_scratch = tempfile.mkdtemp(prefix="labkit-nbval-")
for _name in ("RESULTS", "CHECKPOINTS"):
    os.environ[f"LABKIT_{_name}"] = os.path.join(_scratch, _name.lower())
os.environ.setdefault("LABKIT_PROGRESS_INTERVAL", "30")

REAL_RESULTS = Path(__file__).resolve().parent / "results"


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


_before = snapshot(REAL_RESULTS)


def pytest_sessionfinish(session, exitstatus):
    changed = sorted(set(_before.items()) ^ set(snapshot(REAL_RESULTS).items()))
    if changed:
        names = sorted({name for name, _ in changed})
        print(f"\nFAILED: the test session changed the real results/: {names[:10]}")
        session.exitstatus = 1
    else:
        print("\nreal results/ untouched by the test session")
