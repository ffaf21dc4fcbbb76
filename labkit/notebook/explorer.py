"""An interactive explorer of the analysed runs' test predictions, for JupyterLab (ipywidgets).

Pick a model, a true class and a predicted class (a cell of its confusion matrix) to see a
gallery of those test images with the model's top-3 probabilities, a page of 16 at a time; choose
one of them to see every model's prediction and Grad-CAM side by side. `show` draws the default
selection as plain images too, so a notebook stays readable where widgets are not live
(papermill output, GitHub, HTML exports without the widget script).

The figures are `matplotlib.figure.Figure` objects rendered to PNG, never pyplot figures: pyplot's
post-execute hook, which widget messages trigger, would show and close half-drawn figures.
"""
from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure
from torch import Tensor

from labkit.data import Cifar10
from labkit.reporting.figures import model_colour, panel_title
from labkit.robustness.gradcam import grad_cam, map_stride, place
from labkit.robustness.suite import RunAnalysis

COLUMNS, ROWS = 8, 2     # a gallery page; every page has this size, so the page never jumps
WRONG = "crimson"
MAKING_IT_LIVE = """**Live explorer.** The controls below need a running kernel: open this notebook in JupyterLab,
trust it (*File ▸ Trust Notebook*, or `jupyter trust` on the file: the widgets' script does not run in
an untrusted notebook), set `analyse = False` in the parameters cell to only read each run's saved
analysis (nothing is computed and nothing in `results/` is rewritten), and run all cells. Until then
this is where the controls will appear; the static view above does not change with them."""


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def images_phrase(count: int) -> str:
    return f"{count:,} image" + ("" if count == 1 else "s")


class Explorer:
    def __init__(self, analyses: dict[str, RunAnalysis], data: Cifar10):
        if not analyses:
            raise ValueError("nothing to explore: no analysed runs")
        self.analyses, self.classes = analyses, data.classes
        self.page_size = COLUMNS * ROWS
        self.index = next(iter(analyses.values())).test_index
        self.images, self.labels = data.test_images[self.index], data.test_labels[self.index]
        self.strides = {run: map_stride(analysis.model) for run, analysis in analyses.items()}   # Grad-CAM cell spacing

    def most_confused(self, run: str) -> tuple[int, int]:
        """The (true, predicted) class pair the run confuses most often."""
        predicted = self.analyses[run].probabilities.argmax(1)
        counts = torch.bincount(self.labels * len(self.classes) + predicted, minlength=len(self.classes) ** 2)
        counts = counts.view(len(self.classes), -1).fill_diagonal_(-1)
        flat = int(counts.argmax())
        return flat // len(self.classes), flat % len(self.classes)

    def matching(self, run: str, true: int, predicted: int) -> Tensor:
        """Positions (in the analysed subset) of true-class images the run labels `predicted`,
        most confident first."""
        probabilities = self.analyses[run].probabilities
        hits = ((self.labels == true) & (probabilities.argmax(1) == predicted)).nonzero().flatten()
        return hits[probabilities[hits, predicted].argsort(descending=True)]

    def pages(self, run: str, true: int, predicted: int) -> int:
        return max(1, -(-len(self.matching(run, true, predicted)) // self.page_size))

    def page_positions(self, run: str, true: int, predicted: int, page: int) -> Tensor:
        return self.matching(run, true, predicted)[page * self.page_size:(page + 1) * self.page_size]

    def page_phrase(self, run: str, true: int, predicted: int, page: int) -> str:
        total = len(self.matching(run, true, predicted))
        if not total:
            return "no images"
        first = page * self.page_size
        return f"images {first + 1}–{min(first + self.page_size, total)} of {total:,}"

    def top3(self, run: str, position: int) -> str:
        p = self.analyses[run].probabilities[position]
        values, classes = p.topk(3)
        return "\n".join(f"{self.classes[c]} {v:.0%}" for v, c in zip(values.tolist(), classes.tolist()))

    def gallery_figure(self, run: str, true: int, predicted: int, page: int = 0) -> Figure:
        """One page of the gallery: each image titled with its test number and the run's top 3."""
        matches = self.matching(run, true, predicted)
        positions = self.page_positions(run, true, predicted, page)
        fig = Figure(figsize=(1.45 * COLUMNS, 2.15 * ROWS), layout="constrained")
        axes = fig.subplots(ROWS, COLUMNS, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        wrong = true != predicted
        for ax, position in zip(axes.flat, positions.tolist()):
            ax.imshow(self.images[position].permute(1, 2, 0).numpy())
            ax.set_title(f"#{int(self.index[position])}\n{self.top3(run, position)}", fontsize=8,
                         color=WRONG if wrong else "black")
        if not len(matches):
            fig.text(0.5, 0.5, f"{run} labels no {self.classes[true]} image "
                     f"'{self.classes[predicted]}'", ha="center", va="center")
        verb = "right" if not wrong else "wrong, titles in red"
        fig.suptitle(f"{run}: true {self.classes[true]}, predicted {self.classes[predicted]} ({verb}); "
                     f"{images_phrase(len(matches))}, most confident first; "
                     f"{self.page_phrase(run, true, predicted, page)}", fontsize=9)
        return fig

    def detail_figure(self, position: int) -> Figure:
        """One test image, then every model's Grad-CAM of its predicted class with its top 3; a
        model's title is red when its prediction is wrong."""
        image = self.images[position:position + 1]
        panels = len(self.analyses) + 1
        fig = Figure(figsize=(2.1 * panels, 3.4), layout="constrained")
        axes = fig.subplots(1, panels)
        axes[0].imshow(image[0].permute(1, 2, 0).numpy())
        axes[0].set_title(f"test image #{int(self.index[position])}\ntrue: "
                          f"{self.classes[int(self.labels[position])]}", fontsize=8)
        for ax, (run, analysis) in zip(axes[1:], self.analyses.items()):
            predicted = analysis.probabilities[position].argmax().view(1)
            maps, layer, side = grad_cam(analysis.model, image, predicted)
            ax.imshow(image[0].permute(1, 2, 0).numpy())
            ax.imshow(place(maps, self.strides[run])[0].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            wrong = int(predicted) != int(self.labels[position])
            ax.set_title(f"{panel_title(run)}\n{self.top3(run, position)}", fontsize=8,
                         color=WRONG if wrong else "black")
            ax.set_xlabel(f"Grad-CAM at {layer} ({side}×{side})", fontsize=7, color=model_colour(run))
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        return fig

    def default_selection(self) -> tuple[str, int, int, int | None]:
        run = next(iter(self.analyses))
        true, predicted = self.most_confused(run)
        positions = self.matching(run, true, predicted)
        return run, true, predicted, (int(positions[0]) if len(positions) else None)

    def widget(self):
        import ipywidgets as widgets

        run, true, predicted, _ = self.default_selection()
        classes = [(name, i) for i, name in enumerate(self.classes)]
        wide = widgets.Layout(width="max-content")
        model_box = widgets.Dropdown(options=list(self.analyses), value=run, description="model", layout=wide)
        true_box = widgets.Dropdown(options=classes, value=true, description="true class")
        predicted_box = widgets.Dropdown(options=classes, value=predicted, description="predicted")
        previous, following = widgets.Button(description="◀ previous"), widgets.Button(description="next ▶")
        page_label = widgets.Label()
        image_box = widgets.Dropdown(options=[], description="image")
        gallery, detail = widgets.Image(format="png"), widgets.Image(format="png")
        note = widgets.HTML()
        state = {"page": 0}

        def selection():
            return model_box.value, true_box.value, predicted_box.value

        def show_detail(_=None):
            if image_box.value is None:
                note.value = "No test image in this cell of the confusion matrix: choose another pair of classes."
                detail.layout.display = "none"
            else:
                note.value = ""
                detail.value = png(self.detail_figure(image_box.value))
                detail.layout.display = None

        def show_page():
            page = state["page"]
            gallery.value = png(self.gallery_figure(*selection(), page))
            page_label.value = self.page_phrase(*selection(), page)
            previous.disabled = page == 0
            following.disabled = page + 1 >= self.pages(*selection())
            positions = self.page_positions(*selection(), page)
            image_box.unobserve(show_detail, names="value")    # draw the detail once, below, not per change
            image_box.options = [(f"#{int(self.index[p])}", int(p)) for p in positions.tolist()]
            image_box.value = image_box.options[0][1] if image_box.options else None
            image_box.observe(show_detail, names="value")
            show_detail()

        def new_selection(_=None):
            state["page"] = 0
            show_page()

        def turn(step: int):
            def handler(_):
                state["page"] = min(max(0, state["page"] + step), self.pages(*selection()) - 1)
                show_page()
            return handler

        for box in (model_box, true_box, predicted_box):
            box.observe(new_selection, names="value")
        previous.on_click(turn(-1))
        following.on_click(turn(1))
        image_box.observe(show_detail, names="value")
        show_page()
        return widgets.VBox([
            widgets.HBox([model_box, true_box, predicted_box]),
            widgets.HBox([previous, following, page_label]),
            gallery,
            widgets.HTML("Titles: the test image's number, then the model's three most likely classes; "
                         "red when the prediction is wrong. Choose one of this page's images to compare every "
                         "model on it:"),
            image_box, note, detail])


def show(analyses: dict[str, RunAnalysis], data: Cifar10) -> Explorer:
    """The default selection as plain images (readable anywhere), then the live explorer, each under
    its own heading."""
    from IPython.display import Image, Markdown, display

    explorer = Explorer(analyses, data)
    run, true, predicted, position = explorer.default_selection()
    display(Markdown(f"**Static view** of the explorer's default selection: the cell of the confusion matrix that "
                     f"{run} fills most often off the diagonal (true {data.classes[true]}, predicted "
                     f"{data.classes[predicted]}), then every model on its most confident image."))
    display(Image(png(explorer.gallery_figure(run, true, predicted))))
    if position is not None:
        display(Image(png(explorer.detail_figure(position))))
    display(Markdown(MAKING_IT_LIVE))
    display(explorer.widget())
    return explorer
