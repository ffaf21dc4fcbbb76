"""Root conftest: the notebooks under nbval run in smoke mode and write into a temporary
results root, so the suite never touches the real results/."""
import os
import tempfile

os.environ["LABKIT_SMOKE"] = "1"
_scratch = tempfile.mkdtemp(prefix="labkit-nbval-")
for _name in ("RESULTS", "CHECKPOINTS"):
    os.environ[f"LABKIT_{_name}"] = os.path.join(_scratch, _name.lower())
os.environ.setdefault("LABKIT_PROGRESS_INTERVAL", "30")
