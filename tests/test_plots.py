"""The pictures a run writes: nothing overlaps, the axes say what they hold."""
import numpy as np
import pytest

from visiontl import plots


@pytest.fixture
def figures(monkeypatch):
    kept = []
    real = plots.save

    def keep(fig, path, dpi=110):
        kept.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save", keep)
    return kept


def test_grid_captions_never_cover_the_row_above(figures, tmp_path):
    square = [np.full((320, 320, 3), 120, np.uint8)] * 8  # detection's letterboxed validation images
    titles = ["nuclei_384_000.png\n13 true, 13 predicted"] * 8
    plots.image_grid(square, titles, tmp_path / "grid.png", cols=4, title="validation: true boxes green")
    fig = figures[-1]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    axes = fig.axes
    for upper, lower in zip(axes[:4], axes[4:]):
        image = upper.get_images()[0].get_window_extent(renderer)
        caption = lower.title.get_window_extent(renderer)
        assert caption.y1 < image.y0 - 2, (caption, image)  # below the image above it, not over it


def test_curves_count_epochs_in_whole_numbers_and_fractions_end_at_one(figures, tmp_path):
    history = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1.2 / e, "val/accuracy": a}
               for e, a in zip((1, 2, 3), (0.9, 0.99, 1.0))]
    plots.curves(history, tmp_path / "curves.png")
    fig = figures[-1]
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert fig.axes[1].get_ylim()[1] == 1.0


def test_counts_read_as_words():
    assert [plots.counted(n, "class") for n in (0, 1, 2)] == ["0 classes", "1 class", "2 classes"]
    assert plots.counted(1, "image") == "1 image" and plots.counted(3, "box") == "3 boxes"
