"""Every zoo model, registered on import; a new model is one module plus one line here."""
from models import cnn_digits  # noqa: F401  (registers itself)
from models.registry import MODELS, get_model

__all__ = ["MODELS", "get_model"]
