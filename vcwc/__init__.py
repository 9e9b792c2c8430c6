"""vcwc: compress neural-network weights with video codecs."""

__version__ = "0.1.0"

from .codecs import codec_names, get_codec  # noqa: E402
from .errors import (CodecError, FFmpegError, FormatError, InputError, IntegrityError,  # noqa: E402
                     VcwcError)
from .files import load_model, save_state_dict  # noqa: E402
from .pipeline import CompressedModel, Selection, compress, decompress, open_compressed  # noqa: E402
from .quantize import QuantConfig, dequantize, quantize  # noqa: E402
from .report import size_report  # noqa: E402

__all__ = [
    "CodecError", "CompressedModel", "FFmpegError", "FormatError", "InputError", "IntegrityError",
    "QuantConfig", "Selection", "VcwcError", "codec_names", "compress", "decompress", "dequantize",
    "get_codec", "load_model", "open_compressed", "quantize", "save_state_dict", "size_report",
]
