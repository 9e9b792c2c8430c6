"""The headline tables of a sweep: per model, the smallest video-coded file meeting each bar of its task,
beside int8 + zstd and NNCodec (headline.md), and one row per model compared with NNCodec (short.md)."""

from __future__ import annotations

from .report_format import best_meeting, codec_names, model_task, qp_text, quality_summary, scales
from .scoring import BARS, IMAGE_CLASSIFICATION

BUDGETS = tuple(-bar.limit for bar in BARS[IMAGE_CLASSIFICATION])  # accuracy-drop budgets, in top-1 points


def headline_markdown(records: list[dict]) -> str:
    """Per image model and budget: the smallest video-coded file within it, beside int8 + zstd and NNCodec;
    then, sharper, vcwc against each NNCodec point at equal or better agreement. Text models follow in a
    table of their own, per bar of their task."""
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
    text_lines = [
        "| model | bar | smallest vcwc file | bits/weight | quality | int8 + zstd -19 (tensor / channel) | "
        "NNCodec smallest meeting the bar | vcwc / zstd (channel) | vcwc / NNCodec |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    models = sorted({r["model"] for r in records if r.get("status") == "ok" and not r.get("eval_limit")})
    for model in models:
        full = [r for r in records if r["model"] == model and r.get("status") == "ok" and not r.get("eval_limit")]
        if model_task(full) != IMAGE_CLASSIFICATION:
            text_lines += _text_headline(model, full)
            continue
        video = [r for r in full if r["method"] in codec_names()]
        zstd = next((r for r in full if r["method"] == "int8_zstd_per_tensor"), None)
        for bar in BARS[IMAGE_CLASSIFICATION]:
            budget = -bar.limit
            best, nncodec = smallest_meeting(full, bar)
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
            lines.append(
                f"| {head} | {budget} | {best['method']} {scales(best)} QP {qp_text(best)} | "
                f"{best['bits_per_weight']:.3f} | {best['top1_change']:+.2f} ± {best['top1_change_se']:.2f} | "
                f"{best['agreement']:.2f} | {zstd_text} | {nnc_text} | {ratio(best, zstd)} | {ratio(best, nncodec)} |"
            )
        knee = best_meeting(full, BARS[IMAGE_CLASSIFICATION][-1]).get(("nncodec", "per_tensor", None, None))
        window = [r for r in full if r["method"] == "nncodec" and knee and knee["qp"] - 3 <= r["qp"] <= knee["qp"]]
        for point in sorted(window, key=lambda r: r["qp"]):
            rival = min(
                (r for r in video if r["agreement"] >= point["agreement"]), key=lambda r: r["coded_bytes"], default=None
            )
            if rival is None:
                continue
            matched.append(
                f"| {model} | {point['qp']} | {point['bits_per_weight']:.3f} | {point['agreement']:.2f} | "
                f"{rival['method']} {scales(rival)} QP {qp_text(rival)} | {rival['bits_per_weight']:.3f} | "
                f"{rival['agreement']:.2f} | {rival['bits_per_weight'] / point['bits_per_weight']:.2f} |"
            )
    text = "\n".join(lines) + "\n" if len(lines) > 2 or len(text_lines) == 2 else ""
    if len(matched) > 2:
        text += (
            "\nAt equal or better agreement with the original predictions (the sharper measure), against "
            f"NNCodec's smallest file within {max(BUDGETS)} points and the three QPs below it:\n\n"
            + "\n".join(matched)
            + "\n"
        )
    if len(text_lines) > 2:
        text += ("\nText models:\n\n" if text else "") + "\n".join(text_lines) + "\n"
    return text


def ratio(record: dict, other: dict | None) -> str:
    """record's bits per weight over other's, or "-" where there is no other."""
    return f"{record['bits_per_weight'] / other['bits_per_weight']:.2f}" if other else "-"


def smallest_meeting(full: list[dict], bar) -> tuple[dict | None, dict | None]:
    """The smallest video-coded file of a model's records that meets the bar, and NNCodec's."""
    within = best_meeting(full, bar)
    best = min(
        (r for key, r in within.items() if key[0] in codec_names()), key=lambda r: r["coded_bytes"], default=None
    )
    return best, next((r for key, r in within.items() if key[0] == "nncodec"), None)


def _text_headline(model: str, full: list[dict]) -> list[str]:
    """A text model's rows of the headline: per bar, the smallest video file meeting it, NNCodec's, int8 + zstd."""
    baseline = {r["method"]: r for r in full if r["method"].startswith("int8_zstd")}
    tensor, channel = baseline.get("int8_zstd_per_tensor"), baseline.get("int8_zstd_per_channel")
    zstd_text = " / ".join(f"{r['bits_per_weight']:.3f}" if r else "-" for r in (tensor, channel))
    rows = []
    for bar in BARS[model_task(full)]:
        best, nncodec = smallest_meeting(full, bar)
        nnc_text = f"{nncodec['bits_per_weight']:.3f} (QP {nncodec['qp']})" if nncodec else "none or not run"
        if best is None:
            rows.append(f"| {model} | {bar.text} | none meets it | | | {zstd_text} | {nnc_text} | | |")
            continue
        rows.append(
            f"| {model} | {bar.text} | {best['method']} {scales(best)} QP {qp_text(best)} | "
            f"{best['bits_per_weight']:.3f} | {quality_summary(best)} | {zstd_text} | {nnc_text} | "
            f"{ratio(best, channel)} | {ratio(best, nncodec)} |"
        )
    return rows


def short_markdown(records: list[dict], budget: float = 1.0) -> str:
    """One row per model compared with NNCodec: the smallest vcwc file meeting its task's looser bar (for
    images, within `budget` top-1 points), NNCodec's, and int8 + zstd -19."""
    lines = [
        f"| model | top-1 % | smallest vcwc file within {budget:g} point | bits/weight | NNCodec within "
        f"{budget:g} point | int8 + zstd -19 | vcwc / NNCodec |",
        "|---|---|---|---|---|---|---|",
    ]
    text_lines = [
        "| model | bar | smallest vcwc file meeting it | bits/weight | NNCodec meeting it | int8 + zstd -19 (channel) "
        "| vcwc / NNCodec |",
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
        task = model_task(full)
        bar = BARS[task][-1] if task != IMAGE_CLASSIFICATION else next(b for b in BARS[task] if -b.limit == budget)
        best, nncodec = smallest_meeting(full, bar)
        zstd_method = "int8_zstd_per_tensor" if task == IMAGE_CLASSIFICATION else "int8_zstd_per_channel"
        zstd = next((r for r in full if r["method"] == zstd_method), None)
        if best is None or nncodec is None or zstd is None:
            continue
        if task != IMAGE_CLASSIFICATION:
            text_lines.append(
                f"| {model} | {bar.text} | {best['method']} {scales(best)} QP {qp_text(best)} ({quality_summary(best)}) | "
                f"{best['bits_per_weight']:.3f} | {nncodec['bits_per_weight']:.3f} (QP {nncodec['qp']}) | "
                f"{zstd['bits_per_weight']:.3f} | {best['bits_per_weight'] / nncodec['bits_per_weight']:.2f} |"
            )
            continue
        lines.append(
            f"| {model} | {full[0]['original_top1']:.2f} | {best['method']} {scales(best)} QP {qp_text(best)} "
            f"({best['top1_change']:+.2f}) | {best['bits_per_weight']:.3f} | {nncodec['bits_per_weight']:.3f} "
            f"(QP {nncodec['qp']}, {nncodec['top1_change']:+.2f}) | "
            f"{zstd['bits_per_weight']:.3f} | {best['bits_per_weight'] / nncodec['bits_per_weight']:.2f} |"
        )
    text = "\n".join(lines) + "\n" if len(lines) > 2 or len(text_lines) == 2 else ""
    if len(text_lines) > 2:
        text += ("\n" if text else "") + "\n".join(text_lines) + "\n"
    return text
