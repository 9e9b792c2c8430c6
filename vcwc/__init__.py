"""vcwc: compress neural-network weights with video codecs.

    import vcwc
    compressed = vcwc.compress(model, recipe="smallest", arch="cifar_resnet20")
    compressed.save("model.vcwc")
    state_dict = vcwc.decompress("model.vcwc")

Names are loaded on first use, so `import vcwc` (and commands such as `vcwc info`) need no torch.
"""

from importlib import import_module

from .errors import CodecError, FFmpegError, FormatError, InputError, IntegrityError, VcwcError, VcwcWarning  # noqa: F401
from .version import __version__  # noqa: F401

_EXPORTS = {
    "compress": "vcwc.api",
    "decompress": "vcwc.api",
    "open_compressed": "vcwc.api",
    "CompressedModel": "vcwc.api",
    "Recipe": "vcwc.recipe",
    "RECIPES": "vcwc.recipe",
    "CodecSettings": "vcwc.recipe",
    "QuantizerSettings": "vcwc.recipe",
    "Selection": "vcwc.recipe",
    "TensorOverride": "vcwc.recipe",
    "step_from_qp": "vcwc.recipe",
    "load_model": "vcwc.io",
    "save_state_dict": "vcwc.save",
    "QuantConfig": "vcwc.quant.quantize",
    "quantize": "vcwc.quant.quantize",
    "dequantize": "vcwc.quant.quantize",
    "codec_names": "vcwc.codecs",
    "get_codec": "vcwc.codecs",
}

__all__ = [
    "CodecError",
    "FFmpegError",
    "FormatError",
    "InputError",
    "IntegrityError",
    "VcwcError",
    "VcwcWarning",
    "__version__",
    *_EXPORTS,
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vcwc' has no attribute {name!r}")
