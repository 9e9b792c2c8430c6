"""`vcwc compress --target-drop POINTS`: the search for per-tensor step QPs within a top-1 budget on calibration
images (vcwc.bench.target), and the recipe and summary it gives."""

from __future__ import annotations

from ..errors import InputError
from ..recipe import Recipe, TensorOverride


def searched_recipe(args, model, recipe: Recipe):
    """The search's result, and the recipe with its step QPs as per-tensor overrides and the bias correction on."""
    searched = _search(args, model, recipe)
    overrides = tuple(TensorOverride(name=name, step_qp=qp) for name, qp in searched.best.step_qps.items())
    return searched, recipe.with_changes(bias_correction="on", overrides=overrides)


def _search(args, model, recipe: Recipe):
    from ..bench.target import search
    from ..eval.datasets import load_dataset

    if not args.calibration:
        raise InputError("--target-drop needs --calibration (images to evaluate on, not the test set)")
    calibration = load_dataset(args.calibration, limit=args.calibration_limit)
    return search(
        model,
        args.arch,
        calibration,
        args.target_drop,
        max_evaluations=args.max_evaluations,
        selection=recipe.selection,
        rounding=recipe.resolved(architecture=True, real_inputs=True, batchnorm=True).rounding,
        progress=True,
    )


def search_summary(searched) -> dict:
    best, qps = searched.best, searched.best.step_qps
    return {
        "target_drop": searched.target_drop,
        "evaluations": searched.evaluations,
        "images": searched.subject.original.n_images,
        "agreement": best.agreement,
        "mean_kl": best.mean_kl,
        "calibration_top1": best.calibration_top1,
        "original_calibration_top1": searched.subject.original.top1,
        "step_qps": qps,
        "step_qps_range": f"{min(qps.values())}..{max(qps.values())}",
    }
