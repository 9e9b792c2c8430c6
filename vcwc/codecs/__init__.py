"""Video codecs: the registry, the software, hardware and phone-like encoders, and the one module that
runs ffmpeg. Pure Python: nothing here imports torch.

Importing this package registers every codec, software first, so listings show those first.
"""

from . import software  # noqa: F401,I001  (registers x264, x265, aom, svtav1)
from . import mobile  # noqa: F401,I001
from . import hardware  # noqa: F401,I001
from .base import AUTO_ORDER, Codec, EncoderSettings, codec_names, get_codec, stream_decoder

__all__ = ["AUTO_ORDER", "Codec", "EncoderSettings", "codec_names", "get_codec", "stream_decoder"]
