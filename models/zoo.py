"""Every zoo model, registered on import; a new model is one module plus one line here."""

from models import (  # noqa: F401  (each registers itself)
    audio_kws,
    cnn_digits,
    denoise_ae,
    mlp_tabular,
    mobilenet_digits,
    multimodal,
    recurrent_digits,
    text_bilstm,
    tiny_transformer,
)
from models.registry import MODELS, get_model

__all__ = ["MODELS", "get_model"]
