"""A real browser: the executed analysis notebook, figures and explorer widgets included, renders
in JupyterLab. Headless Chromium from the Debian package, driven by Playwright's Python API
(its own browser download is not used); JupyterLab serves on 127.0.0.1."""
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill as pm
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "06_analysis.ipynb"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium', "
                                                         "which .ci/run installs with apt-get)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The analysis notebook executed in smoke mode (one CNN run), served by JupyterLab."""
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "analysis.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters=dict(runs="cnn"))
    # JupyterLab renders widget views (an unsafe output type) only in trusted notebooks; a notebook
    # papermill wrote is trusted once its reader says so, as the README tells users to
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(tmp_path / "analysis.ipynb")], check=True,
                   capture_output=True)
    port = free_port()
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               "--IdentityProvider.token=", "--allow-root", f"--ServerApp.root_dir={tmp_path}"],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, tmp_path
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def test_the_executed_analysis_notebook_shows_its_figures_and_widgets_in_jupyterlab(served):
    from playwright.sync_api import sync_playwright

    url, folder = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/analysis.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-OutputArea-output img", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .widget-dropdown select", timeout=60_000)
            time.sleep(3)   # let the remaining outputs and widget views settle
            page.screenshot(path=str(folder / "jupyterlab.png"), full_page=True)
            figures = page.locator(".jp-Notebook .jp-OutputArea-output img").count()
            dropdowns = page.locator(".jp-Notebook .widget-dropdown").count()
            text = page.locator(".jp-Notebook").inner_text()
        finally:
            browser.close()
    # reliability, corruptions, attacks, Grad-CAM, the explorer's static gallery and detail, and
    # the gallery and detail inside the explorer's output widgets
    assert figures >= 8, f"only {figures} figures rendered"
    assert dropdowns == 4, f"{dropdowns} explorer dropdowns rendered, expected model, true, predicted and image"
    for failure in ("Error displaying widget", "model not found", "Traceback"):
        assert failure not in text
