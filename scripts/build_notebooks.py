"""Writes notebooks/*.ipynb, so the six notebooks share one structure and stay in step
with labkit. Edit this file, then run `python scripts/build_notebooks.py`."""
import textwrap
from dataclasses import fields
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.notebook.params import NOTEBOOK_MODELS
from labkit.reporting.markdown import replace_generated
from labkit.reporting.tables import MODEL_TITLES
from labkit.robustness.suite import AnalysisSettings
from labkit.training.config import HEADLINE_RECIPES, TrainConfig, defaults_for, notebook_settings

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

def parameters_cell(notebook: str) -> str:
    """The parameters cell, generated from TrainConfig's declarations: every setting that applies to
    the notebook's model, its default (the model's headline recipe) and its help text."""
    model, *others = NOTEBOOK_MODELS[notebook]
    defaults = defaults_for(model)
    lines = ["# Parameters (papermill: -p name value). `papermill --help-notebook` lists them."]
    for f in notebook_settings(model):
        help = f"architecture: {' or '.join([model, *others])}" if f.name == "model" else f.metadata["help"]
        lines.append(f"{f.name}: {f.type} = {defaults[f.name]!r}".ljust(40) + f"# {help}")
    return "\n".join(lines)


def configure_cell(notebook: str) -> str:
    names = [f.name for f in notebook_settings(NOTEBOOK_MODELS[notebook][0])]
    call = ", ".join(f"{n}={n}" for n in names)
    return ("from labkit.models import build_model\n"
            "from labkit.notebook import params, views\n"
            "from labkit.reporting import figures\n"
            "from labkit.runs.store import save_run\n"
            "from labkit.training.loop import fit\n\n"
            "# Checks every parameter and fails here with a clear message (before any data is read);\n"
            "# LABKIT_SMOKE=1 shrinks the run. Without run_name, the run gets a new name, printed below.\n"
            f"config = params.configure({textwrap.fill(repr(notebook) + ', ' + call, 100, subsequent_indent=' ' * 26)})\n"
            "config")


ARCHITECTURES = {
    "01_cnn": dict(
        title="The tutorial CNN",
        intro="""The smallest of the four: the network from the PyTorch tutorial *Training a classifier*.
It is a **plain conv/pool/fc stack**: two 5×5 convolutions (3→6 and 6→16 channels), each followed by
ReLU and 2×2 max-pooling, flatten the 16×5×5 maps into 400 numbers, and three fully connected layers
400→120→84→10. No normalisation, no shortcuts: 62,006 parameters in all, almost all of them in the
first fully connected layer. Every layer only sees the output of the one before, so depth is limited by
how well the signal and gradient survive the stack; this is the baseline the other models must beat.""",
        look_md="""## A look inside: the learned first-layer filters
The six 5×5×3 kernels of the first convolution, each scaled to its own range. Trained on CIFAR-10 they
become colour blobs and oriented edges: the same kind of detectors that appear in much larger nets.""",
        look_code='''look = figures.conv_filters(result.model.features[0].weight, f"{config.run_name}: first-layer filters (6 × 5×5×3)")''',
        look_name="filters"),
    "02_resnet18": dict(
        title="ResNet-18",
        intro="""**Residual learning** (He et al., 2016): instead of asking two stacked 3×3 convolutions to
produce the desired map H(x) directly, a block learns the *residual* F(x) = H(x) − x and outputs
relu(F(x) + x). The **shortcut** carries x past the convolutions unchanged, so the identity is the easy
default: a block with nothing to add leaves its input as it is. He et al. found that this lets deep residual
nets improve with depth where plain nets of the same depth degrade; the gradient figure below measures what
the shortcuts do to gradients at initialisation.

When a block changes the shape (stride 2, or more channels), x cannot be added as it is: the shortcut
becomes a **1×1 convolution with stride 2 plus batch norm** (a projection) that maps x to the new shape.

This is the CIFAR variant: a 3×3 stride-1 stem with 64 channels keeps the 32×32 resolution, then four
stages of two BasicBlocks at 64/128/256/512 channels (the last three halve the resolution), a 4×4 global
average pool and a linear head: 11,173,962 parameters.

The control is the same network with every shortcut removed, `plain18` (11,000,138 parameters): it
isolates what the shortcuts contribute. It is judged against the 15-epoch `resnet18` run, so train it
with that run's recipe: `-p model plain18 -p epochs 15 -p cutout 0 -p ema_decay 0.0 -p tta 1 -p val_size 5000`.""",
        look_md="""## A look inside: gradients at initialisation, with and without the shortcuts
For one batch and a freshly initialised network, the norm of the loss gradient reaching each block's
convolution weights, once with the shortcuts and once with every shortcut removed (the same weights).
Without the additions, the gradient must pass through every convolution on its way back. The ratio
column says whether the shortcuts raise (above 1) or lower (below 1) each block's gradient; the sentence
under the table reads the measured numbers.""",
        look_code='''gradients, look = views.resnet_gradient_look(config.model, data_set)
print(inspect.gradient_reading(gradients))
gradients''',
        look_name="gradient_norms"),
    "03_densenet": dict(
        title="DenseNet (CIFAR, growth rate 12)",
        intro="""**Dense connectivity** (Huang et al., 2017): inside a dense block every layer receives the
concatenation of the block input and *all* earlier layers' outputs, and contributes k new channels, the
**growth rate** (k = 12 here). Features are reused rather than relearned, which makes the network very
parameter-efficient.

Each layer is a **bottleneck**: BN-ReLU-1×1 conv down to 4k = 48 channels, then BN-ReLU-3×3 conv to k
channels, so the expensive 3×3 never sees the full, growing concatenation. Between blocks a
**transition** (BN-ReLU-1×1 conv halving the channels, then 2×2 average pooling) keeps the width in
check and reduces resolution. The stem is a 3×3 conv to 2k = 24 channels; blocks have [6, 12, 24, 16]
layers; a final BN-ReLU, global pool and linear head give 1,000,618 parameters, eleven times fewer than
ResNet-18.

The cost: every concatenation, BN and ReLU output is a new tensor that autograd keeps for backward,
so activations grow quadratically with block depth, and the many thin layers run slower per FLOP.""",
        look_md="""## A look inside: channel growth and the activation memory it implies
Input channels of every bottleneck layer (they grow by 12 per layer and halve at each transition), and
the memory of the tensors autograd keeps for backward, per image, next to ResNet-18 and the
memory-efficient DenseNet option (`memory_efficient=True`, which recomputes concat, BN, ReLU and the 1×1
convolution in backward).""",
        look_code='''channels, memory, look = views.densenet_memory_look()
print({name: f"{mb:.1f} MB/image" for name, mb in memory.items()})
channels.groupby("block").in_channels.agg(["min", "max", "count"])''',
        extra_md="""### The memory-efficient option, measured
Speed and peak memory of the normal and the memory-efficient DenseNet from the benchmark runs
(`python -m labkit.bench --models densenet_cifar,densenet_cifar_memory_efficient --batch-size 256`):
recomputation trades some speed for memory.""",
        extra_code='''measured = views.densenet_benchmarks()
measured if len(measured) else print("no DenseNet benchmark in results/benchmarks yet")''',
        look_name="channels_memory"),
    "04_se_resnet18": dict(
        title="SE-ResNet-18",
        intro="""**Squeeze-and-excitation** (Hu et al., 2018) lets a block reweight its own channels from
global context. After the block's two convolutions compute F(x):

1. **squeeze**: global average pooling turns each channel of F(x) into one number (C values);
2. **excitation**: two fully connected layers, C→C/16 with ReLU and C/16→C, without biases;
3. a **sigmoid** turns those into gates in (0, 1);
4. **rescale**: each channel of F(x) is multiplied by its gate,

and only then is the shortcut added. It costs about 87 k parameters on top of ResNet-18
(11,261,002 in all) and little compute.

Run this notebook with `-p model se_resnet18_imagenet_stem` for the variant printed in the lab report,
whose 7×7 stride-2 stem and max-pool shrink 32×32 images to 8×8 before layer1 (the ablation).""",
        look_md="""## A look inside: what the gates do
For every SE block, over test images: the mean gate, how much it varies between images (per channel,
averaged), between channels and between the class means. A block whose gates all sit near 0.5 and
barely vary only halves its residual: its excitation recalibrates nothing. The figure shows the mean
gate of every channel (x axis) for each class (rows) at the last block of each stage.""",
        look_code='''gates, look = views.excitation_look(result.model, data_set, title=config.run_name)
print(inspect.gate_reading(gates))
print(inspect.class_reading(gates, inspect.last_blocks(gates.index)))
gates''',
        look_name="excitation"),
}


def architecture_notebook(name: str, spec: dict) -> nbformat.NotebookNode:
    save_table = ", gradients" if spec["look_name"] == "gradient_norms" else ", gates" if spec["look_name"] == "excitation" else ""
    cells = [
        new_markdown_cell(f"# {spec['title']} on CIFAR-10\n\n{spec['intro']}"),
        new_code_cell(parameters_cell(name), metadata={"tags": ["parameters"]}),
        new_code_cell(configure_cell(name)),
        new_markdown_cell("## The code\nThe module that defines this architecture, as labkit trains it."),
        new_code_cell("views.show_source(config.model)"),
        new_markdown_cell("## Structure\nThe module tree, then parameters, FLOPs and output shape per stage "
                          "for one 3×32×32 image (FLOPs count a multiply-add as 2)."),
        new_code_cell("net = build_model(config.model)\nprint(views.module_tree(net))\nviews.summary_table(net)"),
        new_markdown_cell("## Data\nCIFAR-10 decoded once into uint8 tensors (cached); the loader crops, flips "
                          "and normalises whole batches as tensors."),
        new_code_cell("data_set = params.load_data(config)\nviews.sample_grid(data_set);"),
        new_markdown_cell("## Training\nSGD with Nesterov momentum, label smoothing, a linear warmup then linear "
                          "decay, bf16 autocast and channels_last where supported; the recipe's cutout and weight "
                          "average (EMA) when set. A checkpoint is written every epoch; the test split is evaluated "
                          "once, after the last epoch. First, how long that will take on this machine."),
        new_code_cell("print(views.time_estimate(config, data_set))"),
        new_code_cell("result = fit(config, data_set)\n"
                      "folder = save_run(result)    # metrics, history and weights, before anything below can fail\n"
                      "print(\"saved to\", folder)"),
        new_markdown_cell("## Curves\nTrain loss includes label smoothing and augmentation, so it sits above the "
                          "validation loss; the gap between the accuracies is the one to watch. With a weight "
                          "average (EMA), val is measured on the averaged weights (solid) and on the live ones "
                          "(dashed)."),
        new_code_cell("figures.training_curves(result.history, title=config.run_name);"),
        new_markdown_cell("## Accuracy on the test split"),
        new_code_cell("print(views.accuracy_summary(result))\nviews.per_class_table(result)"),
        new_code_cell("figures.per_class_bars(result.test.per_class, f\"{config.run_name}: per-class test accuracy\", "
                      "figures.model_colour(config.model));\n"
                      "figures.confusion_heatmap(result.test.confusion, data_set.classes, "
                      "config.run_name);"),
        new_markdown_cell("## Sample predictions\nRandom test images, true → predicted class with the model's "
                          "confidence; mistakes are framed in red."),
        new_code_cell("predictions = views.prediction_grid(result, data_set)"),
        new_markdown_cell(spec["look_md"]),
        new_code_cell(("from labkit.models import inspect\n\n" if "inspect." in spec["look_code"] else "")
                      + spec["look_code"]),
        *([new_markdown_cell(spec["extra_md"]), new_code_cell(spec["extra_code"])] if "extra_md" in spec else []),
        new_markdown_cell("## Saving the figures\nMetrics, history, confusion matrix and fp16 weights went to "
                          "`results/<run_name>/` (or `$LABKIT_RESULTS`) right after training; the figures "
                          "above join them."),
        new_code_cell(f'views.save_figure(predictions, config.run_name, "predictions")\n'
                      f'views.save_figure(look, config.run_name, "{spec["look_name"]}"{save_table})\n'
                      f'print("figures saved to", folder)'),
    ]
    return new_notebook(cells=cells, metadata=KERNEL)


def comparison_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Comparing the four architectures\n\nEverything here is read from `results/`: the "
                          "runs the architecture notebooks saved. By default each model is represented by its longest "
                          "run (for ResNet-18 its 80-epoch final fit, not the 15-epoch `resnet18`); of runs with the same "
                          "budget, a final fit on all 50,000 training images comes first, then the one the report's "
                          "rule chose on val. A run that has not been trained is reported as missing, never filled in."),
        new_code_cell('# Parameters (papermill: -p name value)\n'
                      'runs = "longest"     # "longest": each model\'s longest run; or run names, comma-separated\n'
                      'results_dir = ""     # results root; empty means labkit\'s default (results/ or $LABKIT_RESULTS)',
                      metadata={"tags": ["parameters"]}),
        new_code_cell("from pathlib import Path\n\n"
                      "from labkit.notebook import params\n"
                      "from labkit.reporting import claims, figures, select, tables\n\n"
                      "params.reject_unknown_parameters([\"runs\", \"results_dir\"])\n"
                      "root = Path(results_dir) if results_dir else None\n"
                      "if root is not None and not root.is_dir():\n"
                      "    raise ValueError(f\"results_dir {results_dir!r} is not a folder\")\n"
                      "loaded = select.select_runs(runs, root)\n"
                      "every_run = select.load_every_run(root)   # a final fit's val curve, the budget figure\n"
                      "print({name: \"found\" if run else \"missing\" for name, run in loaded.items()})"),
        new_markdown_cell("## The table\nParameters, forward FLOPs per image, final test and validation accuracy, "
                          "epochs, training time, training throughput, activation memory per image and peak "
                          "memory, and the device each run used."),
        new_code_cell("table = tables.format_table(tables.comparison_table(loaded))\n"
                      "display(table.reindex(columns=[\"status\", *tables.ACCURACY_COLUMNS]))\n"
                      "table.reindex(columns=[\"status\", *tables.COST_COLUMNS])"),
        new_markdown_cell("## Validation curves, against epochs and against training compute\nA final fit on all "
                          "training images has no val split; its model's longest run with one, where its recipe "
                          "was judged, is drawn in its place."),
        new_code_cell("if select.present(loaded):\n    figures.curves_figure(loaded, every_run);"),
        new_markdown_cell("## Per-class accuracy\nWhich classes each model finds hard (cat and dog, usually)."),
        new_code_cell("if select.present(loaded):\n    figures.per_class_heatmap(loaded);"),
        new_markdown_cell("## Accuracy against size and against training compute"),
        new_code_cell("if select.present(loaded):\n    figures.scatter_figure(loaded);"),
        new_markdown_cell("## Accuracy against the training budget\nEvery run in `results/`, grouped by model and "
                          "epoch budget; runs at one budget are seeds (mean ± sd). The table sets each model's longest "
                          "budget against what the lab report said."),
        new_code_cell("if select.present(every_run):\n"
                      "    display(tables.format_table(tables.lab_report_table(every_run)))\n"
                      "    figures.budget_figure(every_run);"),
        new_markdown_cell("## The lab report's claims, checked\nEach verdict is computed from the numbers above, "
                          "on the longest of the runs above for each model; 'missing' means a run it needs has not "
                          "been trained, 'not comparable yet' that two runs it compares had different epoch budgets. "
                          "Such a claim is judged on the longest budget at which its models all ran (`on`). "
                          "An accuracy difference counts only "
                          "beyond two standard errors (binomial, from the val or test set size): each large model is "
                          "one training run (one seed); the CNN has five seeds."),
        new_code_cell("import pandas as pd\n\npd.set_option(\"display.max_colwidth\", None)\n"
                      "pd.DataFrame(claims.claims_where_comparable(loaded, every_run, select.load_benchmarks(root)))"),
        new_markdown_cell("## Training speed\nThe benchmark (`python -m labkit.bench`) measures labkit's fast "
                          "path against the reference pipeline, with the same machine's peak (the faster of a large matmul "
                          "and a 3×3 convolution)."),
        new_code_cell("benchmarks = select.load_benchmarks(root)\n"
                      "for stem, bench in benchmarks.items():\n"
                      "    print(f\"{stem}.json: {bench['device']}, {bench['date'][:10]}\")\n"
                      "    display(tables.format_table(tables.benchmark_table(bench)))\n"
                      "if not benchmarks:\n    print(\"no benchmark in results/benchmarks yet\")"),
        new_markdown_cell("## Recipe tuning\nShort trials of the whole schedule with some settings changed "
                          "(`python -m labkit.tune`), judged on the validation split only: the test split never "
                          "chose a recipe."),
        new_code_cell("from labkit import tune\n\n"
                      "logs = tune.load_logs(root)\n"
                      "for stem, log in logs.items():\n"
                      "    print(f\"{log['model']}, {log['epochs']}-epoch trials ({stem}.json)\")\n"
                      "    display(tables.format_table(tune.trials_table(log)))\n"
                      "if not logs:\n    print(\"no tuning trials in results/tuning yet\")"),
    ]
    return new_notebook(cells=cells, metadata=KERNEL)


ANALYSIS_NOTEBOOK_PARAMETERS = [   # (name, type, default, help) of the parameters that are not AnalysisSettings
    ("runs", "str", "longest", 'saved runs to analyse: "longest" (each model\'s longest run) or names, comma-separated'),
    ("data", "str", "auto", 'the data set the runs trained on: "auto", "torchvision", or the path they used'),
    ("results_dir", "str", "", "results root; empty means labkit's default (results/ or $LABKIT_RESULTS)"),
    ("save", "bool", True, "write results/<run>/analysis.json, test_probabilities.pt and figures/gradcam.png"),
    ("analyse", "bool", True, "True: analyse runs lacking a current saved analysis; False: only read them"),
]


def analysis_parameters_cell() -> str:
    """The analysis notebook's parameters: its own, then AnalysisSettings' declarations (epsilons as
    a comma-separated string, the form papermill passes)."""
    declared = [(f.name, "str", ",".join(f"{e:g}" for e in f.default), f.metadata["help"] + ", comma-separated")
                if f.name == "epsilons" else (f.name, f.type, f.default, f.metadata["help"])
                for f in fields(AnalysisSettings)]
    parameters = ANALYSIS_NOTEBOOK_PARAMETERS[:2] + declared + ANALYSIS_NOTEBOOK_PARAMETERS[2:]
    lines = ["# Parameters (papermill: -p name value). `papermill --help-notebook` lists them."]
    lines += [f"{name}: {kind} = {default!r}".ljust(40) + f"# {help}" for name, kind, default, help in parameters]
    return "\n".join(lines)


def analysis_configure_cell() -> str:
    names = [f.name for f in fields(AnalysisSettings)] + ["runs", "results_dir", "save", "analyse"]
    call = ", ".join(f"{n}={n}" for n in names)
    return ("from labkit.notebook import explorer, params, views\n"
            "from labkit.reporting import figures\n"
            "from labkit.robustness import suite\n\n"
            "# Checks every parameter and fails here with a clear message; LABKIT_SMOKE=1 shrinks the subsets.\n"
            f"{textwrap.fill(f'names, root, settings = params.configure_analysis({call})', 110, subsequent_indent=' ' * 50)}\n"
            "data_set = params.analysis_data(data)\n"
            "settings")


def analysis_notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("""# Beyond the lab report: calibration, robustness and what the networks look at

The lab report asked for accuracy, per-class results and speed. A reviewer of image classifiers asks next:

- **Are the probabilities trustworthy?** Expected calibration error (ECE, 15 bins), NLL and Brier score on
  the test split, before and after *temperature scaling* (one scalar T dividing the logits, fitted on the
  validation split). For scale: an uncalibrated CIFAR-10 ResNet-110 has ECE 4.6 %, and 0.83 % after
  temperature scaling (Guo et al., 2017). Our models train with label smoothing, which lowers confidence.
- **How do they hold up when images are degraded?** Fifteen corruptions in the manner of CIFAR-10-C
  (noises, blurs, contrast, brightness, saturate, pixelate, JPEG, elastic) at severities 1–5. These are
  generated here from our JPEG copy, so the numbers compare our models with each other and are *not*
  comparable to published CIFAR-10-C figures (for scale only: RobustBench's standardly trained
  WideResNet-28-10 keeps 73.5 % mean accuracy on CIFAR-10-C at 94.8 % clean).
- **And when they are attacked?** FGSM and PGD-10 (L∞) at ε = 0.5–8/255, by torchattacks.
- **What do they look at?** Grad-CAM of each model's prediction on the same 8 test images, 4 that every
  model gets right and 4 that most get wrong.

Every analysis runs on fixed, stratified, seeded test subsets; sizes are parameters."""),
        new_code_cell(analysis_parameters_cell(), metadata={"tags": ["parameters"]}),
        new_code_cell(analysis_configure_cell()),
        new_markdown_cell("## Running the analyses\nFor each run: calibration, then the corruptions, then the attacks. "
                          "The corrupted images are made once and shared by all runs. A run whose saved analysis was "
                          "made from its present weights, on the same data, with the same settings is read, not "
                          "redone (delete its `analysis.json` to redo it); one whose corrupted images predate a "
                          "change to the corruptions gets only its corruption figures redone. With `analyse = False` "
                          "this only reads "
                          "each run's saved analysis (it must be from the run's present weights)."),
        new_code_cell("if analyse:\n"
                      "    analyses = suite.analyse_runs(names, data_set, settings, root, save=save, reuse=True)\n"
                      "else:\n"
                      "    analyses = suite.load_analyses(names, data_set, root)\n"
                      "summaries = {name: a.summary for name, a in analyses.items()}"),
        new_markdown_cell("""## Calibration
ECE is the gap between confidence and accuracy, averaged over 15 confidence bins weighted by their image
counts; NLL and Brier score reward confident right answers and punish confident wrong ones. Columns with
(T) are after temperature scaling. T < 1 sharpens under-confident probabilities, T > 1 softens
over-confident ones."""),
        new_code_cell('views.styled(suite.calibration_table(summaries), percent=["ECE", "ECE (T)", "test acc (no TTA)"])'),
        new_code_cell("figures.reliability_diagrams(summaries);"),
        new_markdown_cell("""## Corruption robustness
Accuracy for each corruption, averaged over its five severities, and the mean over all 75 corrupted sets
(the *mean corruption accuracy*), on the same corrupted images for every model."""),
        new_code_cell("views.styled(suite.corruption_table(summaries), percent=\"all\")"),
        new_code_cell("figures.corruption_heatmaps(summaries);"),
        new_markdown_cell("""## Adversarial robustness
Accuracy on attacked images; ε is the largest change to any pixel, in grey levels of 255. None of these
models was trained to resist attacks, so a few grey levels of PGD usually bring them near zero."""),
        new_code_cell("views.styled(suite.attack_table(summaries), percent=\"all\")"),
        new_code_cell("figures.attack_curves(summaries);"),
        new_markdown_cell("""## Grad-CAM: what each model looks at
The gradient of the predicted class's score weighs the channels of the deepest stage whose maps are
still at least 4×4; red is where the evidence is. The CIFAR ResNets and DenseNet explain with 4×4 maps
and the CNN with 10×10. The ImageNet-stem variant shrinks the image to 8×8 before its first stage, and
its last two stages are 2×2 and 1×1, which cannot localise anything; its maps come from layer2 (4×4),
halfway through the network."""),
        new_code_cell("if analyse:\n"
                      "    picks = suite.pick_gradcam_images(list(analyses.values()), data_set.test_labels, settings.seed)\n"
                      "    for analysis in analyses.values():\n"
                      "        suite.add_gradcam(analysis, data_set, picks)\n"
                      "views.gradcam_figure(summaries, data_set);"),
        new_markdown_cell("""## Explorer
Pick a model, a true class and a predicted class (a cell of the confusion matrix) to see those test
images with the model's top-3 probabilities, 16 at a time; choose one to see every model's prediction
and Grad-CAM side by side. First comes a static view of the default selection (plain images, readable
anywhere), then the live controls, with how to make them live without re-running the analyses."""),
        new_code_cell("view = explorer.show(analyses, data_set)"),
        new_markdown_cell("## Time taken and saving\nWall time per analysis and run (seconds), then, with `save` "
                          "and `analyse`, `results/<run>/analysis.json`, `test_probabilities.pt` and "
                          "`figures/gradcam.png`, which `python -m labkit.report` and this notebook with "
                          "`analyse = False` read. With `analyse = False` nothing is written."),
        new_code_cell("display(views.styled(suite.wall_time_table(summaries)))\n"
                      "if save and analyse:\n    views.save_analyses(analyses, data_set, root)"),
    ]
    return new_notebook(cells=cells, metadata=KERNEL)


KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}

def settings_table() -> str:
    """The README's settings table, from TrainConfig's declarations: the base default, and where it differs
    ResNet-18's headline recipe, which the command line and notebooks start from; the column names every
    model whose headline recipe is the same."""
    headline = HEADLINE_RECIPES["resnet18"]
    sharing = ", ".join(MODEL_TITLES[model] for model, recipe in HEADLINE_RECIPES.items() if recipe == headline)
    rows = [f"| setting | base default | headline: {sharing} | what it does | notebooks |",
            "|---|---|---|---|---|"]
    for f in fields(TrainConfig):
        where = ("every model" if f.metadata["models"] is None else ", ".join(f.metadata["models"])) \
            if f.metadata["notebook"] else "command line only"
        changed = f"`{headline[f.name]!r}`" if f.name in headline else ""
        rows.append(f"| `{f.name}` | `{f.default!r}` | {changed} | {f.metadata['help']} | {where} |")
    return "\n".join(rows)


def write_readme_settings() -> None:
    readme = NOTEBOOKS.parent / "README.md"
    readme.write_text(replace_generated(readme.read_text(), "settings", settings_table()))


if __name__ == "__main__":
    write_readme_settings()
    NOTEBOOKS.mkdir(exist_ok=True)
    books = {name: architecture_notebook(name, spec) for name, spec in ARCHITECTURES.items()}
    books["05_comparison"] = comparison_notebook()
    books["06_analysis"] = analysis_notebook()
    for name, book in books.items():
        for index, cell in enumerate(book.cells):
            cell.id = f"cell-{index:02d}"  # stable ids keep regenerated notebooks diff-free
        nbformat.write(book, NOTEBOOKS / f"{name}.ipynb")
    print("wrote", ", ".join(sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))))
