"""The report's figures (matplotlib/seaborn), shared with the notebooks; PNG data URIs for the HTML."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from peru_sentiment.schema import MONITOR

sns.set_theme(style="whitegrid", context="notebook")
# Categorical axes of numbers ("16", "32") are intended; matplotlib would log a note for every one.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs) -> tuple[Figure, object]:
    """A standalone figure (no pyplot state: nothing to close, displays once in a notebook) and its axes."""
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots(nrows, ncols, **kwargs)


def to_data_uri(figure: Figure, dpi: int = 96) -> str:
    """The figure as an embedded PNG (``data:image/png;base64,...``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def data_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """Rows per label, channel, language and region (all splits), from :func:`analysis.data_card`."""
    figure = Figure(figsize=(12, 8), layout="constrained")
    grid = figure.add_gridspec(3, 2, width_ratios=[1, 1.1])
    for row, column in enumerate(("label", "channel", "language")):
        axis = figure.add_subplot(grid[row, 0])
        tables[column]["total"].plot.barh(ax=axis, color=sns.color_palette()[row])
        axis.set(title=f"rows by {column}", xlabel="", ylabel="")
        axis.xaxis.set_major_locator(MaxNLocator(5))
        axis.invert_yaxis()
    axis = figure.add_subplot(grid[:, 1])
    tables["region"]["total"].plot.barh(ax=axis, color=sns.color_palette()[3])
    axis.set(title="rows by region", xlabel="", ylabel="")
    axis.invert_yaxis()
    return figure


def sweep_figure(summary: pd.DataFrame, hyperparameters: list[str]) -> Figure:
    """Validation macro-F1 of every trial against each hyperparameter the sweep varied."""
    completed = summary.dropna(subset=[MONITOR])
    varied = [name for name in hyperparameters if name in completed and completed[name].nunique() > 1]
    varied = varied or [name for name in hyperparameters if name in completed][:1]
    figure, axes = _subplots(1, len(varied), figsize=(3.6 * len(varied), 3.4), squeeze=False, sharey=True)
    for axis, name in zip(axes[0], varied, strict=True):
        values = completed[name]
        if pd.api.types.is_float_dtype(values) and not (values % 1 == 0).all():  # continuous: scatter
            axis.scatter(values, completed[MONITOR], s=60, color="tab:blue", edgecolor="black")
            if values.min() > 0 and values.max() / values.min() > 2:
                axis.set_xscale("log")
        else:
            sns.stripplot(
                x=values.astype(str), y=completed[MONITOR], ax=axis, size=9, jitter=0.1, edgecolor="black", linewidth=1
            )
        axis.set(xlabel=name, ylabel="validation macro-F1")
    figure.suptitle(f"Sweep: {len(completed)} completed trials")
    return figure


def training_curves_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch training and validation curves of each metric dvclive logged."""
    metrics = sorted(history["metric"].unique())
    figure, axes = _subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        rows = history[history["metric"] == metric]
        for split, label in (("train", "training"), ("eval", "validation")):
            curve = rows[rows["split"] == split]
            axis.plot(curve["step"] + 1, curve["value"], marker="o", label=label)
        axis.set(title=metric, xlabel="epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.legend()
    return figure


def baselines_figure(scores: pd.DataFrame) -> Figure:
    """Test macro-F1 and accuracy of the model and each baseline (rows: systems)."""
    figure, axis = _subplots(figsize=(7, 3.2))
    scores[["macro_f1", "accuracy"]].plot.barh(ax=axis)
    axis.set(xlim=(0, 1.12), xlabel="test score", ylabel="")
    axis.legend(loc="lower right")
    axis.invert_yaxis()
    for container in axis.containers:
        axis.bar_label(container, fmt="%.3f", padding=2, fontsize=8)
    return figure


def _confusion_heatmap(axis, matrix: list[list[int]], labels: list[str], with_shares: bool, **options) -> None:
    """A confusion matrix (rows: true) coloured by row share, annotated with counts (and shares)."""
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    annotations = np.vectorize(lambda c, s: f"{c}\n{s:.1%}")(counts, shares) if with_shares else counts
    sns.heatmap(
        shares,
        annot=annotations,
        fmt="" if with_shares else "d",
        cmap="Blues",
        vmin=0,
        vmax=1,
        xticklabels=labels,
        yticklabels=labels,
        ax=axis,
        cbar=False,
        **options,
    )


def confusion_figure(labels: list[str], matrix: list[list[int]]) -> Figure:
    """Confusion matrix (rows: true label), counts and row shares."""
    figure, axis = _subplots(figsize=(4.8, 4))
    _confusion_heatmap(axis, matrix, labels, with_shares=True)
    axis.set(xlabel="predicted", ylabel="true")
    return figure


def calibration_figure(reliability: list[dict], ece: float) -> Figure:
    """Reliability diagram of the top-class confidence."""
    figure, axis = _subplots(figsize=(4.8, 4))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if reliability:
        bins = pd.DataFrame(reliability)
        axis.plot(bins["confidence"], bins["accuracy"], marker="o", label="model")
        for _, row in bins.iterrows():
            axis.annotate(
                f"{row['count']:.0f}",
                (row["confidence"], row["accuracy"]),
                fontsize=7,
                xytext=(3, -10),
                textcoords="offset points",
            )
    axis.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="mean confidence in bin",
        ylabel="accuracy in bin",
        title=f"ECE {ece:.3f} (labels: texts per bin)",
    )
    axis.legend(loc="upper left")
    return figure


def region_f1_figure(by_region: dict[str, dict], names: dict[str, str]) -> Figure:
    """Test macro-F1 per region, with the number of test rows."""
    frame = pd.DataFrame(by_region).T.sort_values("macro_f1")
    frame.index = [
        f"{names.get(code, code)} ({int(rows)})" for code, rows in zip(frame.index, frame["rows"], strict=True)
    ]
    figure, axis = _subplots(figsize=(7, 0.25 * len(frame) + 1))
    frame["macro_f1"].plot.barh(ax=axis, color="tab:blue")
    axis.set(xlim=(0, 1), xlabel="test macro-F1 (test rows)", ylabel="")
    return figure


def attention_grid_figure(attention: np.ndarray, length: int) -> Figure:
    """Layer x head grid of attention matrices (query rows, key columns) over the first `length` pieces."""
    layers, heads = attention.shape[:2]
    gap = max(1, length // 8)
    mosaic = np.full((layers * (length + gap), heads * (length + gap)), np.nan)
    for layer in range(layers):
        for head in range(heads):
            top, left = layer * (length + gap), head * (length + gap)
            mosaic[top : top + length, left : left + length] = attention[layer, head, :length, :length]
    size = min(8.0, 0.7 * heads + 1.5)
    figure, axis = _subplots(figsize=(size, size * layers / heads + 0.5))
    # Most weights are small; saturating at the 99th percentile keeps the patterns visible.
    top = float(np.nanpercentile(mosaic, 99)) or 1.0
    image = axis.imshow(mosaic, cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
    centres = (length - 1) / 2 + np.arange(max(layers, heads)) * (length + gap)
    axis.set_xticks(centres[:heads], [str(h + 1) for h in range(heads)])
    axis.set_yticks(centres[:layers], [str(layer + 1) for layer in range(layers)])
    axis.set(xlabel="head", ylabel="layer")
    axis.grid(False)
    figure.colorbar(image, ax=axis, shrink=0.6, label="attention weight", extend="max")
    return figure


def timeline_figure(timeline: pd.DataFrame, events: list[dict]) -> Figure:
    """Negative share over time in each incident's region (true and predicted), the incident window shaded."""
    figure, axes = _subplots(len(events), 1, figsize=(10, 2.4 * max(1, len(events))), squeeze=False, sharex=True)
    for number, (axis, event) in enumerate(zip(axes[:, 0], events, strict=True)):
        rows = timeline[timeline["incident"] == number]
        axis.axvspan(
            pd.Timestamp(event["start"]),
            pd.Timestamp(event["end"]) + pd.Timedelta(days=1),
            color="tab:red",
            alpha=0.15,
            label=f"incident: {event['aspect']}",
        )
        axis.plot(rows["period"], rows["predicted_negative"], marker="o", label="predicted negative share")
        axis.plot(rows["period"], rows["true_negative"], linestyle="--", color="grey", label="true negative share")
        axis.set(ylim=(0, 1), title=f"{event['region_name']}: {event['description']}", ylabel="negative share")
        axis.legend(loc="upper right", fontsize=7)
    return figure


def region_month_figure(share: pd.DataFrame, events: list[dict], names: dict[str, str]) -> Figure:
    """Predicted negative share per region and month on the test split; incident cells outlined in red."""
    figure, axis = _subplots(figsize=(8, 0.3 * len(share) + 1.5))
    labels = [names.get(code, code) for code in share.index]
    sns.heatmap(
        share,
        cmap="Reds",
        vmin=0,
        vmax=1,
        ax=axis,
        yticklabels=labels,
        annot=True,
        fmt=".0%",
        annot_kws={"fontsize": 7},
        cbar_kws={"label": "predicted negative share"},
    )
    months = list(share.columns)
    for event in events:
        if event["region"] not in share.index:
            continue
        row = list(share.index).index(event["region"])
        for month in pd.period_range(event["start"], event["end"], freq="M").astype(str):
            if month in months:
                axis.add_patch(Rectangle((months.index(month), row), 1, 1, fill=False, edgecolor="red", lw=2))
    axis.set(xlabel="month", ylabel="")
    return figure


def aspect_confusion_figure(polarities: list[str], matrices: dict[str, list[list[int]]]) -> Figure:
    """Per aspect, true polarity (rows, absent included) against predicted, as row shares with counts."""
    columns = 4
    rows = -(-len(matrices) // columns)
    figure, axes = _subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    short = [name[:3] for name in polarities]  # abs, neg, neu, pos
    for axis, (aspect, matrix) in zip(axes.flat, matrices.items(), strict=False):
        _confusion_heatmap(axis, matrix, short, with_shares=False, annot_kws={"fontsize": 8})
        axis.set(title=aspect, xlabel="predicted", ylabel="true")
    for axis in list(axes.flat)[len(matrices) :]:
        axis.set_visible(False)
    return figure
