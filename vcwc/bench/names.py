"""The sweep's vocabulary, with no imports: the command line reads it to build its help without torch."""

SOFTWARE_CODECS = ("x264", "x265", "aom", "svtav1")
BASELINES = ("fp32", "fp16", "int8_per_tensor", "int8_per_channel", "int8_zstd_per_tensor", "int8_zstd_per_channel")
BACKENDS = ("local", "ray")  # where a sweep's points run (vcwc.bench.backends)
NNCODEC = "nncodec"  # the optional NNCodec baseline, run in its own Python (vcwc/bench/nncodec.py)
GRANULARITIES = ("per_tensor", "per_channel", "step")
# The sweep's --corrections: the data-free methods against quantization error, as recipe settings.
CORRECTIONS = {
    "none": {"rounding": "nearest", "bias_correction": "off"},
    "bias": {"rounding": "nearest", "bias_correction": "on"},
    "gptq+bias": {"rounding": "gptq", "bias_correction": "on"},
}
# Step QPs of the fixed-step quantizer (step = 2 ** (qp / 4), NNCodec's scale), in steps of 1 as NNCodec's.
STEP_QP_LADDER = tuple(range(-26, -13))
# NNCodec's quantization step is about 2**(qp/4) in weight units, so 2 steps of QP change the step by a
# factor of about 1.41; use --nncodec-qps for single steps around a knee.
NNCODEC_QP_LADDER = tuple(range(-38, -13, 2))
# With --screen, the full-data points of a series: this many QPs before its knee and this many from it on.
KNEE_BELOW, KNEE_ABOVE = 1, 3
