"""Target drop (`compress --target-drop`): the coarsest per-tensor quantization steps whose model stays within an accuracy budget,
found by evaluation on a calibration set (no training, no gradients).

The criterion is agreement, not accuracy: a budget of d points is met when at most d % of the calibration
images change their top-1 prediction against the original model. Only changed predictions can cost
accuracy, and a pretrained model classifies nearly all of its own training images correctly, so there
the share of changed predictions bounds the accuracy lost on them; KL divergence is reported beside it.

The search works on the fixed-step quantizer (one step 2^(qp/4) per tensor, the codec lossless on the
symbols), so a candidate's weights are known without running a codec, and its size is estimated by the
order-0 entropy of its symbols (the codecs land within a few percent of it):
  1. bisection over one step QP shared by all tensors;
  2. bit allocation across groups of tensors with the same shape (in ResNets, the blocks of a stage):
     each group is probed one QP coarser alone, which prices its bits in KL (KL added per bit saved);
     then trades move the cheapest groups one QP coarser and the dearest one QP finer, and a trade is
     kept when it saves bits, meets the criterion and adds no KL over the shared QP.
Trades rather than free coarsening: a looser rule (coarsen while the criterion holds, KL capped at the
geometric mean of the KLs at the chosen shared QP and the next coarser one) let groups drift coarser on
calibration images without changing their predictions, and on the test file ResNet-20 then lost 2.7
points at a 1-point budget.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..errors import InputError
from ..eval.datasets import Dataset
from ..io import ModelSource
from ..metrics import entropy_bits
from ..models.build import resolve
from ..pipeline.methods import prepare
from ..quant.correction import BiasCorrection
from ..quant.quantize import QuantConfig, dequantize, quantize
from ..recipe import Selection, step_from_qp
from .experiment import ModelUnderTest

QP_RANGE = (-40, 0)  # step 2^-10 .. 1 in weight units
MAX_GROUP_MOVE = 4  # a group's step stays within a factor of 2 of the shared one


@dataclass
class Candidate:
    step_qps: dict[str, int]
    bits: float  # order-0 entropy of all coded symbols, plus a float32 scale per tensor
    agreement: float
    mean_kl: float
    calibration_top1: float

    def meets(self, target_drop: float, kl_cap: float = float("inf")) -> bool:
        return 100.0 - self.agreement <= target_drop + 1e-9 and self.mean_kl <= kl_cap


@dataclass
class TargetSearch:
    """The calibration model and the settings of one search."""

    subject: ModelUnderTest  # the original model scored on the calibration set
    target_drop: float  # points of top-1: at most this % of calibration predictions may change
    bias_correction: bool = True
    max_evaluations: int = 40
    rounding: str = "nearest"  # as the file will be written: gptq levels score differently
    progress: bool = False
    history: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None  # set by run()
    _correction: BiasCorrection | None = field(default=None, repr=False)
    _moments: dict = field(default_factory=dict, repr=False)
    _quantized_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not 0 < self.target_drop < 100:
            raise InputError(f"the target drop must be between 0 and 100 points, got {self.target_drop}")
        state = self.subject.state_dict
        self.coded = [n for n, t in state.items() if self.subject.is_coded(n, t)]
        if not self.coded:
            raise InputError("target drop: the model has no tensors to code")
        methods = prepare(
            self.subject.loaded, self.coded, resolve(self.subject.arch), self.rounding, self.bias_correction
        )
        self._correction, self._moments = methods.correction, methods.moments

    @property
    def evaluations(self) -> int:
        return len(self.history)

    def evaluate(self, step_qps: dict[str, int]) -> Candidate:
        state = self.subject.state_dict
        rebuilt, coded_weights = dict(state), {}
        for name in self.coded:
            symbols, scales = self._quantized(name, step_qps[name])
            weights = dequantize(symbols, scales, self._dependent)
            coded_weights[name] = torch.from_numpy(weights).to(state[name].dtype)
        rebuilt.update(coded_weights)
        if self._correction is not None:
            rebuilt.update(self._correction.corrected(state, coded_weights))
        result = self.subject.score(rebuilt)
        candidate = Candidate(dict(step_qps), self.bits(step_qps), result.agreement, result.mean_kl, result.top1)
        self.history.append(candidate)
        return candidate

    def bits(self, step_qps: dict[str, int]) -> float:
        return sum(self._entropy_bits(name, qp) for name, qp in step_qps.items())

    def _quantized(self, name: str, qp: int):
        """Symbols and scales of one tensor at one step QP, kept: the search comes back to them."""
        key = (name, qp)
        if key not in self._quantized_cache:
            config = QuantConfig(step=step_from_qp(qp), rounding=self.rounding)
            tensor = self.subject.state_dict[name]
            values = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
            q = quantize(values, config, name, self._moments.get(name))
            self._quantized_cache[key] = (q.symbols, q.scales, entropy_bits(q.symbols) + 32 * len(q.scales))
        return self._quantized_cache[key][:2]

    @property
    def _dependent(self) -> bool:
        return self.rounding == "dependent"

    def _entropy_bits(self, name: str, qp: int) -> float:
        self._quantized(name, qp)
        return self._quantized_cache[(name, qp)][2]

    def run(self) -> Candidate:
        bar = tqdm(
            total=self.max_evaluations, desc="target-drop search", unit="eval", disable=None if self.progress else True
        )
        best, kl_cap = self._global_qp(bar)
        self.best = self._per_group(best, kl_cap, bar)
        bar.close()
        return self.best

    def _global_qp(self, bar) -> tuple[Candidate, float]:
        """Bisection for the coarsest single step QP that meets the budget; and the KL cap for stage 2."""
        low, high = QP_RANGE  # low is assumed to pass, high to fail; both are checked when reached
        passing = None
        while high - low > 1 and self.evaluations < self.max_evaluations:
            middle = (low + high) // 2
            candidate = self.evaluate({name: middle for name in self.coded})
            bar.update()
            if candidate.meets(self.target_drop):
                low, passing = middle, candidate
            else:
                high = middle
        if passing is None:
            passing = self.evaluate({name: low for name in self.coded})
            bar.update()
            if not passing.meets(self.target_drop):
                raise InputError(
                    f"target drop {self.target_drop}: even step QP {low} changes "
                    f"{100 - passing.agreement:.2f}% of the calibration predictions"
                )
        return passing, passing.mean_kl

    def _per_group(self, best: Candidate, kl_cap: float, bar) -> Candidate:
        groups = defaultdict(list)
        for name in self.coded:
            groups[tuple(self.subject.state_dict[name].shape)].append(name)
        shared = dict(best.step_qps)

        def moved(base: dict[str, int], shape: tuple, delta: int) -> dict[str, int]:
            """`base` with one group `delta` QPs away, unless that leaves the allowed range."""
            first = groups[shape][0]
            qp = base[first] + delta
            if abs(qp - shared[first]) > MAX_GROUP_MOVE or not QP_RANGE[0] <= qp <= QP_RANGE[1]:
                return base
            return {**base, **dict.fromkeys(groups[shape], qp)}

        price = {}  # KL added per bit saved, one QP coarser alone
        state = self.subject.state_dict
        weights = {shape: sum(state[name].numel() for name in names) for shape, names in groups.items()}
        for shape in sorted(groups, key=lambda g: -weights[g]):
            if self.evaluations >= self.max_evaluations or len(groups) < 2:
                break
            probe = self.evaluate(moved(shared, shape, +1))
            bar.update()
            saved = best.bits - probe.bits
            price[shape] = (probe.mean_kl - best.mean_kl) / saved if saved > 0 else float("inf")
        order = sorted(price, key=price.get)
        for cheap_count in range(1, len(order)):
            if self.evaluations >= self.max_evaluations:
                break
            trial = dict(shared)
            for shape in order[:cheap_count]:
                trial = moved(trial, shape, +1)
            trial = moved(trial, order[-1], -1)
            if self.bits(trial) >= best.bits:
                continue
            candidate = self.evaluate(trial)
            bar.update()
            if not candidate.meets(self.target_drop, kl_cap):
                break
            best = candidate
        return best


def search(
    loaded: ModelSource,
    arch: str,
    calibration: Dataset,
    target_drop: float,
    *,
    bias_correction: bool = True,
    max_evaluations: int = 40,
    selection: Selection | None = None,
    rounding: str = "nearest",
    progress: bool = False,
) -> TargetSearch:
    """Run the search; the returned TargetSearch holds the chosen candidate (`best`) and every evaluation."""
    subject = ModelUnderTest("calibration", loaded, arch, calibration, selection=selection or Selection())
    searcher = TargetSearch(subject, target_drop, bias_correction, max_evaluations, rounding, progress)
    searcher.run()
    return searcher
