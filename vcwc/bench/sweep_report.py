"""Tables and plots of a sweep, rebuilt from its JSON records alone."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path

from ..files import atomic_write
from .sweep import load_records

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
BUDGETS = (0.5, 1.0)  # accuracy-drop budgets, in top-1 points


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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: _csv_value(record.get(key)) for key in CSV_COLUMNS})
    return buffer.getvalue()


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def best_within(records: list[dict], budget: float) -> dict[tuple[str, str], dict]:
    """Per (method, granularity, correction): the smallest fully evaluated file whose top-1 drop is within budget."""
    best = {}
    for r in records:
        if r.get("status") != "ok" or r.get("eval_limit") or r.get("top1_change") is None:
            continue
        if -r["top1_change"] <= budget + 1e-9:
            key = (r["method"], r["granularity"], r.get("correction"))
            if key not in best or r["coded_bytes"] < best[key]["coded_bytes"]:
                best[key] = r
    return best


def summary_markdown(records: list[dict]) -> str:
    by_model = defaultdict(list)
    for record in records:
        by_model[record["model"]].append(record)
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
    for model, rows in by_model.items():
        full = [r for r in rows if not r.get("eval_limit")]
        screen = [r for r in rows if r.get("eval_limit")]
        original = next((r for r in full if r.get("status") == "ok"), None)
        lines.append(f"## {model}")
        if original:
            lines.append(f"Original top-1 {original['original_top1']:.2f}% on {original['eval_images']:,} images.")
        lines.append("")
        marks = defaultdict(str)
        for mark, budget in zip("ab", BUDGETS):
            for record in best_within(full, budget).values():
                marks[record["key"]] += mark
        lines += [
            "| method | scales | QP | bits/weight | file bytes | ratio | weight SNR dB | top-1 % | change | agreement % | mark |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in full:
            lines.append(_row(r, marks[r["key"]]))
        if screen:
            lines += [
                "",
                f"Screening on {screen[0]['eval_limit']:,} class-balanced images (agreement only decides "
                "which QPs get the full evaluation):",
                "",
                "| method | scales | QP | bits/weight | weight SNR dB | agreement % |",
                "|---|---|---|---|---|---|",
            ]
            for r in screen:
                if r.get("status") == "ok":
                    lines.append(
                        f"| {r['method']} | {_scales(r)} | {_qp(r)} | {r['bits_per_weight']:.3f} | "
                        f"{_num(r['weight_snr_db'], 1)} | {r['agreement']:.2f} |"
                    )
        lines.append("")
    return "\n".join(lines)


def headline_markdown(records: list[dict]) -> str:
    """Per model and budget: the smallest video-coded file within it, beside int8 + zstd and NNCodec;
    then, sharper, vcwc against each NNCodec point at equal or better agreement."""
    from ..codecs import codec_names

    lines = [
        "| model (top-1 %) | budget | smallest vcwc file | bits/weight | top-1 change | agreement % | "
        "int8 + zstd -19 (tensor) | NNCodec smallest within budget | vcwc / zstd | vcwc / NNCodec |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    matched = [
        "| model | NNCodec QP | NNCodec bits/weight | its agreement % | smallest vcwc file with agreement "
        ">= it | bits/weight | agreement % | vcwc / NNCodec |",
        "|---|---|---|---|---|---|---|---|",
    ]
    models = sorted({r["model"] for r in records if r.get("status") == "ok" and not r.get("eval_limit")})
    for model in models:
        full = [r for r in records if r["model"] == model and r.get("status") == "ok" and not r.get("eval_limit")]
        video = [r for r in full if r["method"] in codec_names()]
        zstd = next((r for r in full if r["method"] == "int8_zstd_per_tensor"), None)
        for budget in BUDGETS:
            within = best_within(full, budget)
            best = min(
                (r for key, r in within.items() if key[0] in codec_names()),
                key=lambda r: r["coded_bytes"],
                default=None,
            )
            nncodec = next((r for key, r in within.items() if key[0] == "nncodec"), None)
            zstd_text = f"{zstd['bits_per_weight']:.3f}" if zstd else "-"
            nnc_text = (
                f"{nncodec['bits_per_weight']:.3f} (QP {nncodec['qp']}, {nncodec['top1_change']:+.2f}, "
                f"{nncodec['agreement']:.2f}%)"
                if nncodec
                else "not run"
            )
            head = f"{model} ({full[0]['original_top1']:.2f})"
            if best is None:
                lines.append(f"| {head} | {budget} | none within budget | | | | {zstd_text} | {nnc_text} | | |")
                continue
            ratio_zstd = f"{best['bits_per_weight'] / zstd['bits_per_weight']:.2f}" if zstd else "-"
            ratio_nnc = f"{best['bits_per_weight'] / nncodec['bits_per_weight']:.2f}" if nncodec else "-"
            lines.append(
                f"| {head} | {budget} | {best['method']} {_scales(best)} QP {_qp(best)} | "
                f"{best['bits_per_weight']:.3f} | {best['top1_change']:+.2f} ± {best['top1_change_se']:.2f} | "
                f"{best['agreement']:.2f} | {zstd_text} | {nnc_text} | {ratio_zstd} | {ratio_nnc} |"
            )
        knee = best_within(full, max(BUDGETS)).get(("nncodec", "per_tensor", None))
        window = [r for r in full if r["method"] == "nncodec" and knee and knee["qp"] - 3 <= r["qp"] <= knee["qp"]]
        for point in sorted(window, key=lambda r: r["qp"]):
            rival = min(
                (r for r in video if r["agreement"] >= point["agreement"]), key=lambda r: r["coded_bytes"], default=None
            )
            if rival is None:
                continue
            matched.append(
                f"| {model} | {point['qp']} | {point['bits_per_weight']:.3f} | {point['agreement']:.2f} | "
                f"{rival['method']} {_scales(rival)} QP {_qp(rival)} | {rival['bits_per_weight']:.3f} | "
                f"{rival['agreement']:.2f} | {rival['bits_per_weight'] / point['bits_per_weight']:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    if len(matched) > 2:
        text += (
            "\nAt equal or better agreement with the original predictions (the sharper measure), against "
            f"NNCodec's smallest file within {max(BUDGETS)} points and the three QPs below it:\n\n"
            + "\n".join(matched)
            + "\n"
        )
    return text


def short_markdown(records: list[dict], budget: float = 1.0) -> str:
    """One row per model compared with NNCodec: the smallest vcwc file within `budget` top-1 points,
    NNCodec's, and int8 + zstd -19."""
    from ..codecs import codec_names

    lines = [
        f"| model | top-1 % | smallest vcwc file within {budget:g} point | bits/weight | NNCodec within "
        f"{budget:g} point | int8 + zstd -19 | vcwc / NNCodec |",
        "|---|---|---|---|---|---|---|",
    ]
    models = sorted(
        {
            r["model"]
            for r in records
            if r.get("method") == "nncodec" and r.get("status") == "ok" and not r.get("eval_limit")
        }
    )
    for model in models:
        full = [r for r in records if r["model"] == model and r.get("status") == "ok" and not r.get("eval_limit")]
        within = best_within(full, budget)
        best = min(
            (r for key, r in within.items() if key[0] in codec_names()), key=lambda r: r["coded_bytes"], default=None
        )
        nncodec = next((r for key, r in within.items() if key[0] == "nncodec"), None)
        zstd = next((r for r in full if r["method"] == "int8_zstd_per_tensor"), None)
        if best is None or nncodec is None:
            continue
        lines.append(
            f"| {model} | {full[0]['original_top1']:.2f} | {best['method']} {_scales(best)} QP {_qp(best)} "
            f"({best['top1_change']:+.2f}) | {best['bits_per_weight']:.3f} | {nncodec['bits_per_weight']:.3f} "
            f"(QP {nncodec['qp']}, {nncodec['top1_change']:+.2f}) | "
            f"{zstd['bits_per_weight']:.3f} | {best['bits_per_weight'] / nncodec['bits_per_weight']:.2f} |"
            if zstd
            else ""
        )
    return "\n".join(line for line in lines if line) + "\n"


def _row(r: dict, mark: str) -> str:
    if r.get("status") != "ok":
        reason = r.get("reason") or r.get("error", "").splitlines()[0]
        return f"| {r['method']} | {_scales(r)} | {_qp(r)} | {r.get('status')}: {reason} | | | | | | | |"
    change = f"{r['top1_change']:+.2f} ± {r['top1_change_se']:.2f}" if r.get("top1_change_se") is not None else "-"
    return (
        f"| {r['method']} | {_scales(r)} | {_qp(r)} | {r['bits_per_weight']:.3f} | {r['file_bytes']:,} | "
        f"{r['compression_ratio']:.1f}x | {_num(r['weight_snr_db'], 1)} | {r['top1']:.2f} | {change} | "
        f"{r['agreement']:.2f} | {mark} |"
    )


def _scales(r: dict) -> str:
    scales = {"per_channel": "channel", "step": "step"}.get(r["granularity"], "tensor")
    return scales + (f" + {r['correction'].replace('+bias', ' + bias')} corr." if r.get("correction") else "")


def _qp(r: dict) -> str:
    if r["method"] not in _codec_names() and r["method"] != "nncodec":  # NNCodec has QPs of its own
        return "-"
    return "lossless" if r["qp"] is None else str(r["qp"])


def _codec_names():
    from ..codecs import codec_names

    return codec_names()


def _num(value, digits: int) -> str:
    value = float(value)
    return "exact" if math.isinf(value) and value > 0 else f"{value:.{digits}f}"


def plot(records: list[dict], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r for r in records if r.get("status") == "ok" and not r.get("eval_limit")]
    models = sorted({r["model"] for r in full})
    if not models:
        return {}
    paths = {}
    for name, y_key, y_label in (
        ("accuracy.png", "top1", "top-1 accuracy (%)"),
        ("snr.png", "weight_snr_db", "weight SNR (dB)"),
    ):
        columns = min(4, len(models))
        rows_count = -(-len(models) // columns)
        figure, axes = plt.subplots(rows_count, columns, figsize=(5.0 * columns, 4.0 * rows_count), squeeze=False)
        for axis in axes.flat[len(models) :]:
            axis.set_visible(False)
        for axis, model in zip(axes.flat, models):
            rows = [r for r in full if r["model"] == model and math.isfinite(float(r[y_key]))]
            series = defaultdict(list)
            for r in rows:
                series[(r["method"], r["granularity"], r.get("correction") or "")].append(r)
            for (method, _, _), members in sorted(series.items()):
                members.sort(key=lambda r: r["bits_per_weight"])
                label = f"{method} ({_scales(members[0])})"
                x = [r["bits_per_weight"] for r in members]
                y = [float(r[y_key]) for r in members]
                if method in _codec_names() or method == "nncodec":
                    axis.plot(x, y, marker="o", markersize=3, linewidth=1, label=label)
                else:
                    axis.scatter(x, y, marker="s", s=18, label=label)
            if y_key == "top1" and rows:
                original = rows[0]["original_top1"]
                axis.axhline(original, color="grey", linewidth=0.6)
                axis.axhline(original - 0.5, color="grey", linewidth=0.6, linestyle="--")
                axis.set_ylim(max(0, original - 10), original + 2)
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
