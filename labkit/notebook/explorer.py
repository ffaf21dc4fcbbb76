"""An interactive explorer of the analysed runs' test predictions, for JupyterLab (ipywidgets).

Pick a model, a true class and a predicted class (a cell of its confusion matrix) to see a
gallery of those test images with the model's top-3 probabilities; choose one of them to see
every model's prediction and Grad-CAM side by side. `show` draws the default selection as plain
figures too, so a notebook stays readable where widgets are not live (papermill output, GitHub,
HTML exports without the widget script).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from labkit.data import Cifar10
from labkit.reporting.figures import model_colour
from labkit.robustness.gradcam import grad_cam, upsample
from labkit.robustness.suite import RunAnalysis

GALLERY_SIZE = 16


class Explorer:
    def __init__(self, analyses: dict[str, RunAnalysis], data: Cifar10, gallery_size: int = GALLERY_SIZE):
        if not analyses:
            raise ValueError("nothing to explore: no analysed runs")
        self.analyses, self.classes, self.gallery_size = analyses, data.classes, gallery_size
        self.index = next(iter(analyses.values())).test_index
        self.images, self.labels = data.test_images[self.index], data.test_labels[self.index]

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

    def top3(self, run: str, position: int) -> str:
        p = self.analyses[run].probabilities[position]
        values, classes = p.topk(3)
        return "\n".join(f"{self.classes[c]} {v:.0%}" for v, c in zip(values.tolist(), classes.tolist()))

    def gallery_figure(self, run: str, true: int, predicted: int):
        matches = self.matching(run, true, predicted)
        positions = matches[:self.gallery_size]
        columns = 8
        rows = max(1, -(-len(positions) // columns))
        fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.9 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, position in zip(axes.flat, positions.tolist()):
            ax.imshow(self.images[position].permute(1, 2, 0).numpy())
            ax.set_title(f"#{int(self.index[position])}\n{self.top3(run, position)}", fontsize=6)
        verb = "correct" if true == predicted else "mistaken"
        fig.suptitle(f"{run}: true {self.classes[true]}, predicted {self.classes[predicted]} ({verb}; "
                     f"{len(matches)} images, most confident first)", fontsize=9)
        fig.tight_layout()
        return fig

    def detail_figure(self, position: int):
        """One test image, then every model's Grad-CAM of its predicted class with its top 3."""
        image = self.images[position:position + 1]
        fig, axes = plt.subplots(1, len(self.analyses) + 1, figsize=(2.0 * (len(self.analyses) + 1), 2.6))
        axes[0].imshow(image[0].permute(1, 2, 0).numpy())
        axes[0].set_title(f"test image #{int(self.index[position])}\ntrue: {self.classes[int(self.labels[position])]}",
                          fontsize=7)
        for ax, (run, analysis) in zip(axes[1:], self.analyses.items()):
            predicted = analysis.probabilities[position].argmax().view(1)
            maps, layer, side = grad_cam(analysis.model, image, predicted)
            ax.imshow(image[0].permute(1, 2, 0).numpy())
            ax.imshow(upsample(maps)[0].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            wrong = int(predicted) != int(self.labels[position])
            ax.set_title(f"{run}\n{self.top3(run, position)}", fontsize=6, color="crimson" if wrong else "black")
            ax.set_xlabel(f"{layer} {side}×{side}", fontsize=6, color=model_colour(run))
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        return fig

    def default_selection(self) -> tuple[str, int, int, int | None]:
        run = next(iter(self.analyses))
        true, predicted = self.most_confused(run)
        positions = self.matching(run, true, predicted)
        return run, true, predicted, (int(positions[0]) if len(positions) else None)

    def widget(self):
        import ipywidgets as widgets
        from IPython.display import display

        run, true, predicted, _ = self.default_selection()
        classes = [(name, i) for i, name in enumerate(self.classes)]
        model_box = widgets.Dropdown(options=list(self.analyses), value=run, description="model")
        true_box = widgets.Dropdown(options=classes, value=true, description="true class")
        predicted_box = widgets.Dropdown(options=classes, value=predicted, description="predicted")
        image_box = widgets.Dropdown(options=[], description="image")
        gallery, detail = widgets.Output(), widgets.Output()

        def draw(output, fig):
            with output:
                output.clear_output(wait=True)
                display(fig)
            plt.close(fig)

        def show_detail(_=None):
            if image_box.value is None:
                with detail:
                    detail.clear_output()
                    print("no test image in this cell of the confusion matrix")
            else:
                draw(detail, self.detail_figure(image_box.value))

        def show_gallery(_=None):
            draw(gallery, self.gallery_figure(model_box.value, true_box.value, predicted_box.value))
            positions = self.matching(model_box.value, true_box.value, predicted_box.value)[:self.gallery_size]
            image_box.unobserve(show_detail, names="value")    # draw the detail once, below, not per change
            image_box.options = [(f"#{int(self.index[p])}", int(p)) for p in positions.tolist()]
            image_box.value = image_box.options[0][1] if image_box.options else None
            image_box.observe(show_detail, names="value")
            show_detail()

        for box in (model_box, true_box, predicted_box):
            box.observe(show_gallery, names="value")
        image_box.observe(show_detail, names="value")
        show_gallery()
        return widgets.VBox([widgets.HBox([model_box, true_box, predicted_box]), gallery,
                             widgets.HTML("Choose an image of the gallery to compare every model on it:"),
                             image_box, detail])


def show(analyses: dict[str, RunAnalysis], data: Cifar10) -> Explorer:
    """The default selection as plain figures (readable anywhere), then the live explorer."""
    from IPython.display import Markdown, display

    explorer = Explorer(analyses, data)
    run, true, predicted, position = explorer.default_selection()
    display(Markdown(f"**Static view** (the explorer's default selection: the cell of the confusion matrix "
                     f"{run} fills most often off the diagonal). The widgets below change it when a kernel runs."))
    fig = explorer.gallery_figure(run, true, predicted)
    display(fig)
    plt.close(fig)
    if position is not None:
        fig = explorer.detail_figure(position)
        display(fig)
        plt.close(fig)
    display(explorer.widget())
    return explorer
