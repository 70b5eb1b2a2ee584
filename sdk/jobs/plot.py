"""``job.plot()``: losses and scores per epoch, one PNG (matplotlib: ``pip install 'sm-detectors[plot]'``)."""

from __future__ import annotations

from pathlib import Path

from sdk._errors import ConfigurationError
from sdk.jobs.progress import History


def plot_history(history: History, path: str | Path, *, title: str = "", step: str = "epoch") -> Path:
    """Two panels, losses and the rest (mAP, precision, recall...), saved as ``path`` (a PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window: works in a notebook, a terminal and CI alike
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("job.plot() needs matplotlib: pip install 'sm-detectors[plot]' "
                                 "(or pip install matplotlib)") from None
    if not history:
        raise ConfigurationError(f"no per-{step} metrics in the log of {title or 'this job'} yet: nothing to plot")
    losses = {k: v for k, v in history.items() if "loss" in k}
    scores = {k: v for k, v in history.items() if "loss" not in k and k not in ("lr", "train:learning_rate")}
    panels = [(t, d) for t, d in (("losses", losses), ("scores", scores)) if d]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (label, series) in zip(axes[0], panels, strict=False):
        for name, points in sorted(series.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
        ax.set_title(label)
        ax.set_xlabel(step)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
