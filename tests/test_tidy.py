"""Executed notebooks kept in results/ carry no cleared progress lines, no frozen progress widgets
and no machine's absolute paths; everything the run printed stays."""
import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from labkit.notebook.tidy import main, tidy
from labkit.paths import REPO_ROOT, cache_dir

WIDGET = "application/vnd.jupyter.widget-view+json"


def executed_notebook():
    parameters = new_code_cell(f'data = "{REPO_ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"}"',
                               metadata={"tags": ["injected-parameters"]})
    training = new_code_cell("fit(config)", outputs=[
        new_output("display_data", data={"text/plain": ""}),                        # a cleared progress line
        new_output("display_data", data={WIDGET: {"model_id": "a"}, "text/plain": "cnn epoch 1/30:   0%|   | 0/351"}),
        new_output("stream", name="stdout", text=f"no checkpoint at {cache_dir()}/checkpoints/cnn/last.pt\n"
                                                 f"saved to /some/other/clone/results/cnn\n[cnn] epoch 1/30 ...\n"),
        new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBOR"}),
    ])
    notebook = new_notebook(cells=[parameters, training])
    notebook.metadata["widgets"] = {"state": {}}
    notebook.metadata["papermill"] = {"output_path": f"{cache_dir()}/executed/cnn.ipynb",
                                      "parameters": {"data": str(REPO_ROOT.parent / "shared" / "x.tar.gz"), "epochs": 3}}
    return notebook


def test_tidy_drops_leftovers_and_machine_paths_and_keeps_what_the_run_printed():
    notebook = tidy(executed_notebook())
    parameters, training = notebook.cells
    assert parameters.source == 'data = "../shared/datasets/cifar10-jpeg.tar.gz"'
    assert [o.output_type for o in training.outputs] == ["stream", "display_data"]
    assert training.outputs[0].text == ("no checkpoint at ~/.cache/labkit/checkpoints/cnn/last.pt\n"
                                        "saved to results/cnn\n[cnn] epoch 1/30 ...\n")
    assert training.outputs[1].data["image/png"] == "iVBOR"
    assert "widgets" not in notebook.metadata
    assert notebook.metadata.papermill == {"output_path": "~/.cache/labkit/executed/cnn.ipynb",
                                           "parameters": {"data": "../shared/x.tar.gz", "epochs": 3}}
    nbformat.validate(notebook)


def test_tidy_keeps_live_widgets_and_their_state():
    notebook = executed_notebook()
    notebook.cells.append(new_code_cell("explorer.show()", outputs=[
        new_output("display_data", data={WIDGET: {"model_id": "b"}, "text/plain": "VBox(children=(...))"})]))
    notebook = tidy(notebook)
    assert "widgets" in notebook.metadata and len(notebook.cells[-1].outputs) == 1


def test_the_command_writes_the_tidy_copy_and_names_a_missing_file(tmp_path, capsys):
    source, target = tmp_path / "executed.ipynb", tmp_path / "kept" / "notebook.ipynb"
    nbformat.write(executed_notebook(), source)
    assert main([str(source), str(target)]) == 0
    assert len(nbformat.read(target, 4).cells[1].outputs) == 2 and len(nbformat.read(source, 4).cells[1].outputs) == 4
    assert main([str(tmp_path / "none.ipynb")]) == 2
    error = capsys.readouterr().err
    assert "no notebook at" in error and "none.ipynb" in error
    assert main(["--help"]) == 0 and "python -m labkit.notebook.tidy EXECUTED.ipynb" in capsys.readouterr().out


def test_tidy_rewrites_only_absolute_paths():
    from labkit.notebook.tidy import relative

    assert relative("see https://github.com/me/labkit/blob/main/notebooks/x.ipynb") == \
        "see https://github.com/me/labkit/blob/main/notebooks/x.ipynb"
    assert relative('  File "/usr/lib/python3/site-packages/labkit/data.py", line 3') == \
        '  File "/usr/lib/python3/site-packages/labkit/data.py", line 3'
    assert relative("saved to /elsewhere/clone/results/cnn, resumed from /home/u/.cache/labkit/checkpoints/cnn") == \
        "saved to results/cnn, resumed from ~/.cache/labkit/checkpoints/cnn"
