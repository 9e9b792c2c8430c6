"""The plots of a sweep: each model's quality (accuracy.png) and weight SNR (snr.png) against bits per weight."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ..files import atomic_write
from .report_format import codec_names, model_task, scales, series_of
from .scoring import BARS, IMAGE_CLASSIFICATION, LANGUAGE_MODEL, TEXT_ENCODER

# What accuracy.png shows of each task: the record field and its axis label.
PLOTTED = {
    IMAGE_CLASSIFICATION: ("top1", "top-1 accuracy (%)"),
    LANGUAGE_MODEL: ("perplexity_change", "perplexity change (%)"),
    TEXT_ENCODER: ("mean_cosine", "mean cosine to the original's embeddings"),
}


def plot(records: list[dict], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r for r in records if r.get("status") == "ok" and not r.get("eval_limit")]
    models = sorted({r["model"] for r in full})
    if not models:
        return {}
    paths = {}
    for name in ("accuracy.png", "snr.png"):
        columns = min(4, len(models))
        rows_count = -(-len(models) // columns)
        figure, axes = plt.subplots(rows_count, columns, figsize=(5.0 * columns, 4.0 * rows_count), squeeze=False)
        for axis in axes.flat[len(models) :]:
            axis.set_visible(False)
        for axis, model in zip(axes.flat, models):
            task = model_task([r for r in full if r["model"] == model])
            y_key, y_label = PLOTTED[task] if name == "accuracy.png" else ("weight_snr_db", "weight SNR (dB)")
            rows = [
                r for r in full if r["model"] == model and r.get(y_key) is not None and math.isfinite(float(r[y_key]))
            ]
            series = defaultdict(list)
            for r in rows:
                series[series_of(r)].append(r)
            for (method, *_), members in sorted(series.items(), key=lambda item: [part or "" for part in item[0]]):
                members.sort(key=lambda r: r["bits_per_weight"])
                label = f"{method} ({scales(members[0])})"
                x = [r["bits_per_weight"] for r in members]
                y = [float(r[y_key]) for r in members]
                if method in codec_names() or method == "nncodec":
                    axis.plot(x, y, marker="o", markersize=3, linewidth=1, label=label)
                else:
                    axis.scatter(x, y, marker="s", s=18, label=label)
            if y_key == "top1" and rows:
                original = rows[0]["original_top1"]
                axis.axhline(original, color="grey", linewidth=0.6)
                axis.axhline(original - 0.5, color="grey", linewidth=0.6, linestyle="--")
                axis.set_ylim(max(0, original - 10), original + 2)
            elif y_key != "weight_snr_db":
                for bar in BARS[task]:
                    axis.axhline(bar.limit, color="grey", linewidth=0.6, linestyle="--")
            axis.set_xscale("log", base=2)
            axis.set_title(model)
            axis.set_xlabel("bits per coded weight")
            axis.set_ylabel(y_label)
            axis.grid(True, alpha=0.3)
        axes.flat[len(models) - 1].legend(fontsize=6, loc="lower right")
        figure.tight_layout()
        path = out / name

        def save(temporary, figure=figure):
            figure.savefig(temporary, dpi=110, format="png", metadata={"Software": None})

        paths[name] = atomic_write(path, save, force=True)
        plt.close(figure)
    return paths
