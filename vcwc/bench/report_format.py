"""What a sweep report says of its records: their series, the smallest file of each meeting a bar, and
each record's settings and quality as the tables print them. Shared by the tables and the plots."""

from __future__ import annotations

import math
from collections import defaultdict

from .scoring import IMAGE_CLASSIFICATION, LANGUAGE_MODEL, TEXT_ENCODER, task_of


def series_of(r: dict) -> tuple:
    """The series a record belongs to: (method, granularity, correction, recipe name)."""
    return r["method"], r["granularity"], r.get("correction"), r.get("recipe_name")


def best_meeting(records: list[dict], bar) -> dict[tuple, dict]:
    """Per series (series_of): the smallest fully evaluated file that meets the bar (scoring.Bar)."""
    best = {}
    for r in records:
        if r.get("status") != "ok" or r.get("eval_limit") or not bar.met(r):
            continue
        key = series_of(r)
        if key not in best or r["coded_bytes"] < best[key]["coded_bytes"]:
            best[key] = r
    return best


QUALITY_HEADERS = {
    IMAGE_CLASSIFICATION: ["top-1 %", "change", "agreement %"],
    LANGUAGE_MODEL: ["perplexity", "change %", "next-token agreement %"],
    TEXT_ENCODER: ["mean cosine", "min cosine"],
}


def quality_cells(r: dict) -> list[str]:
    """A record's quality against the original, as its task measures it (QUALITY_HEADERS)."""
    task = task_of(r)
    if task == LANGUAGE_MODEL:
        return [f"{r['perplexity']:.3f}", f"{r['perplexity_change']:+.2f}", f"{r['next_token_agreement']:.2f}"]
    if task == TEXT_ENCODER:
        return [f"{r['mean_cosine']:.4f}", f"{r['min_cosine']:.4f}"]
    change = f"{r['top1_change']:+.2f} ± {r['top1_change_se']:.2f}" if r.get("top1_change_se") is not None else "-"
    return [f"{r['top1']:.2f}", change, f"{r['agreement']:.2f}"]


def quality_summary(r: dict) -> str:
    """A record's quality in a few words, for the headline."""
    task = task_of(r)
    if task == LANGUAGE_MODEL:
        return f"perplexity {r['perplexity_change']:+.2f}%, next-token agreement {r['next_token_agreement']:.2f}%"
    if task == TEXT_ENCODER:
        return f"mean cosine {r['mean_cosine']:.4f} (min {r['min_cosine']:.4f})"
    return f"top-1 {r['top1_change']:+.2f}, agreement {r['agreement']:.2f}%"


def original_line(r: dict) -> str:
    task = task_of(r)
    if task == LANGUAGE_MODEL:
        return f"Original perplexity {r['original_perplexity']:.3f} over {r['eval_tokens']:,} tokens ({r['eval_samples']:,} windows)."
    if task == TEXT_ENCODER:
        return f"Sentence embeddings compared with the original's on {r['eval_samples']:,} lines."
    return f"Original top-1 {r['original_top1']:.2f}% on {r['eval_images']:,} images."


def by_model(records: list[dict]) -> dict[str, list[dict]]:
    by_model = defaultdict(list)
    for record in records:
        by_model[record["model"]].append(record)
    return by_model


def model_task(rows: list[dict]) -> str:
    return next((task_of(r) for r in rows if r.get("status") == "ok"), IMAGE_CLASSIFICATION)


def scales(r: dict) -> str:
    if r.get("recipe_name"):
        return f"recipe {r['recipe_name']}"
    scales = {"per_channel": "channel", "step": "step"}.get(r["granularity"], "tensor")
    return scales + (f" + {r['correction'].replace('+bias', ' + bias')} corr." if r.get("correction") else "")


def qp_text(r: dict) -> str:
    if r["method"] not in codec_names() and r["method"] != "nncodec":  # NNCodec has QPs of its own
        return "-"
    return "lossless" if r["qp"] is None else str(r["qp"])


def codec_names() -> list[str]:
    from ..codecs import codec_names as registered

    return registered()


def number(value, digits: int) -> str:
    value = float(value)
    return "exact" if math.isinf(value) and value > 0 else f"{value:.{digits}f}"
