"""Tables and plots of a sweep, rebuilt from its JSON records alone."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

from ..files import atomic_write
from .report_format import (
    QUALITY_HEADERS,
    best_meeting,
    by_model,
    model_task,
    number,
    original_line,
    qp_text,
    quality_cells,
    scales,
)
from .scoring import BARS, IMAGE_CLASSIFICATION, LANGUAGE_MODEL, TEXT_ENCODER, agreement_of, task_of
from .sweep import load_records
from .sweep_headline import headline_markdown, short_markdown
from .sweep_plot import plot

CSV_COLUMNS = [
    "model",
    "arch",
    "method",
    "granularity",
    "qp",
    "eval_limit",
    "status",
    "file_bytes",
    "coded_bytes",
    "bits_per_weight",
    "compression_ratio",
    "weight_snr_db",
    "top1",
    "top5",
    "top1_change",
    "top1_change_se",
    "agreement",
    "mean_kl",
    "eval_images",
    "encode_seconds",
    "decode_seconds",
    "ffmpeg_version",
    "key",
    "error",
]
# Columns of the text tasks and of recipes run by name, added where a sweep has such points.
TEXT_COLUMNS = [
    "task",
    "perplexity",
    "perplexity_change",
    "next_token_agreement",
    "mean_cosine",
    "min_cosine",
    "eval_samples",
    "eval_tokens",
]


def paired_standard_error(record: dict) -> float | None:
    """Upper bound on the standard error of a top-1 change measured on the same images.

    Only images whose prediction changed can flip correctness, so the paired (McNemar) error
    sqrt(flips) / N is at most sqrt(changed predictions) / N.
    """
    if record.get("agreement") is None or not record.get("eval_images"):
        return None
    images = record["eval_images"]
    changed = round((100.0 - record["agreement"]) / 100.0 * images)
    return 100.0 * math.sqrt(changed) / images


def write_report(out: Path) -> dict[str, Path]:
    out = Path(out)
    records = load_records(out)
    for record in records:
        if task_of(record) == IMAGE_CLASSIFICATION:
            record["top1_change_se"] = paired_standard_error(record) if record.get("status") == "ok" else None
    written = {
        "points.jsonl": "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode(),
        "summary.csv": _csv(records).encode(),
        "summary.md": summary_markdown(records).encode(),
        "headline.md": headline_markdown(records).encode(),
        "short.md": short_markdown(records).encode(),
    }
    paths = {}
    for name, data in written.items():
        paths[name] = atomic_write(out / name, data, force=True)
    paths.update(plot(records, out))
    return paths


def _csv(records: list[dict]) -> str:
    columns = list(CSV_COLUMNS)
    if any(r.get("recipe_name") for r in records):
        columns.insert(columns.index("granularity"), "recipe_name")
    if any(task_of(r) != IMAGE_CLASSIFICATION for r in records):
        columns[columns.index("eval_images") + 1 : columns.index("eval_images") + 1] = TEXT_COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: _csv_value(record.get(key)) for key in columns})
    return buffer.getvalue()


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def summary_markdown(records: list[dict]) -> str:
    models = by_model(records)
    tasks = {model_task(rows) for rows in models.values()}
    lines = [
        "# Sweep summary",
        "",
        "bits/weight: compressed bytes of the coded (>= 2-D) weights including scales, per weight. "
        "Top-1 change in points against the original model, ± an upper bound on its paired standard error; "
        "agreement: % of images whose top-1 prediction is unchanged. "
        "Scales `step`: one quantization step of 2^(QP/4) for every tensor (QP on NNCodec's scale), the codec "
        "lossless on the symbols; `+ bias corr.`: BatchNorm means and biases corrected for the coded weights' "
        "mean output shift, without data; `+ gptq`: error-compensating rounding steered by noise, without data "
        "(docs/rate-accuracy.md). Marks: `a` smallest file of its method within 0.5 points of the original top-1, `b` within 1 point.",
        "",
    ]
    if tasks - {IMAGE_CLASSIFICATION}:
        lines[-2] += (
            " Text models: a language model's perplexity on windows of the text and its change in % against "
            "the original's, and next-token agreement (% of positions whose top prediction is the original's); "
            "a text encoder's sentence embeddings by their cosine to the original's. Marks "
            + "; ".join(
                f"for a {task.replace('_', ' ')}: `a` {BARS[task][0].text}, `b` {BARS[task][1].text}"
                for task in (LANGUAGE_MODEL, TEXT_ENCODER)
                if task in tasks
            )
            + "."
        )
    if any(r.get("recipe_name") for r in records):
        lines[-2] += " Scales `recipe NAME`: a named recipe (or recipe file) run as `vcwc compress --recipe` runs it."
    for model, rows in models.items():
        task = model_task(rows)
        full = [r for r in rows if not r.get("eval_limit")]
        screen = [r for r in rows if r.get("eval_limit")]
        original = next((r for r in full if r.get("status") == "ok"), None)
        lines.append(f"## {model}")
        if original:
            lines.append(original_line(original))
        lines.append("")
        marks = defaultdict(str)
        for mark, bar in zip("ab", BARS[task]):
            for record in best_meeting(full, bar).values():
                marks[record["key"]] += mark
        header = ["method", "scales", "QP", "bits/weight", "file bytes", "ratio", "weight SNR dB"]
        header += QUALITY_HEADERS[task] + ["mark"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in full:
            lines.append(_row(r, marks[r["key"]], len(header)))
        if screen:
            subset = "class-balanced images" if task == IMAGE_CLASSIFICATION else "windows or lines of the text"
            lines += [
                "",
                f"Screening on {screen[0]['eval_limit']:,} {subset} (agreement only decides "
                "which QPs get the full evaluation):",
                "",
                "| method | scales | QP | bits/weight | weight SNR dB | agreement % |",
                "|---|---|---|---|---|---|",
            ]
            for r in screen:
                if r.get("status") == "ok":
                    lines.append(
                        f"| {r['method']} | {scales(r)} | {qp_text(r)} | {r['bits_per_weight']:.3f} | "
                        f"{number(r['weight_snr_db'], 1)} | {agreement_of(r):.2f} |"
                    )
        lines.append("")
    return "\n".join(lines)


def _row(r: dict, mark: str, columns: int) -> str:
    if r.get("status") != "ok":
        reason = r.get("reason") or r.get("error", "").splitlines()[0]
        return f"| {r['method']} | {scales(r)} | {qp_text(r)} | {r.get('status')}: {reason} |" + " |" * (columns - 4)
    cells = [
        r["method"],
        scales(r),
        qp_text(r),
        f"{r['bits_per_weight']:.3f}",
        f"{r['file_bytes']:,}",
        f"{r['compression_ratio']:.1f}x",
        number(r["weight_snr_db"], 1),
        *quality_cells(r),
        mark,
    ]
    return "| " + " | ".join(cells) + " |"
