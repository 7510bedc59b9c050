"""The zoo: every model's spec, in one table; a new model is one module plus one entry here.

Builders, datasets and metrics are named as "module:function" (`Ref`) and imported when first
used, so `edgepipe models` and a mistyped model name answer without importing PyTorch.
"""

from edgepipe.models.registry import MODELS, ModelSpec, Ref, get_model, register
from edgepipe.models.shared.specs import InputSpec
from edgepipe.models.synthetic import N_MELS, SEQ_LEN

DIGITS = Ref("edgepipe.models.datasets:digits")
DIGITS_ROWS = Ref("edgepipe.models.datasets:digits_rows")
CLASSIFICATION = Ref("edgepipe.models.metrics:classification")
DIGIT_IMAGE = (InputSpec("x", (1, 1, 8, 8), "float32", "NCHW"),)
DIGIT_ROWS = (InputSpec("x", (1, 8, 8), "float32", "NTC"),)
RECURRENT_TRAINING = {"epochs": 60, "lr": 0.005, "batch_size": 64, "patience": 10, "grad_clip_norm": 1.0}

for spec in (
    ModelSpec(
        name="audio_kws",
        description="keyword-spotting CNN on log-mel features of synthetic tones, chirps and noise (6 classes)",
        task="classification",
        build=Ref("edgepipe.models.audio_kws:build"),
        dataset=Ref("edgepipe.models.synthetic:keyword_audio"),
        inputs=(InputSpec("features", (1, 1, N_MELS, 32), "float32", "NCHW"),),
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={
            "epochs": 40,
            "lr": 0.003,
            "batch_size": 32,
            "patience": 8,
            "lr_schedule": "step",
            "lr_step_size": 15,
        },
    ),
    ModelSpec(
        name="cnn_digits",
        description="small CNN on the bundled 8x8 digits (10 classes)",
        task="classification",
        build=Ref("edgepipe.models.cnn_digits:build"),
        dataset=DIGITS,
        inputs=DIGIT_IMAGE,
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={"epochs": 40, "lr": 0.003, "batch_size": 64},
        image_inputs=("x",),
    ),
    ModelSpec(
        name="denoise_ae",
        description="convolutional denoising autoencoder (transposed conv) on noisy 8x8 digits; PSNR",
        task="regression",
        build=Ref("edgepipe.models.denoise_ae:build"),
        dataset=Ref("edgepipe.models.synthetic:noisy_digits"),
        inputs=(InputSpec("noisy", (1, 1, 8, 8), "float32", "NCHW"),),
        metric=Ref("edgepipe.models.metrics:psnr"),
        primary_metric="psnr_db",
        train_defaults={"epochs": 60, "lr": 0.003, "batch_size": 64, "patience": 8},
    ),
    ModelSpec(
        name="mlp_tabular",
        description="MLP on the bundled breast-cancer features (binary; precision/recall/F1/ROC AUC)",
        task="classification",
        build=Ref("edgepipe.models.mlp_tabular:build"),
        dataset=Ref("edgepipe.models.datasets:breast_cancer"),
        inputs=(InputSpec("features", (1, 30), "float32", "NC"),),
        metric=Ref("edgepipe.models.metrics:binary"),
        primary_metric="accuracy",
        train_defaults={"epochs": 100, "lr": 0.003, "batch_size": 32, "patience": 15, "class_weighting": True},
    ),
    ModelSpec(
        name="mobilenet_digits",
        description="MobileNet-style depthwise-separable CNN with SE on the bundled 8x8 digits",
        task="classification",
        build=Ref("edgepipe.models.mobilenet_digits:build"),
        dataset=DIGITS,
        inputs=DIGIT_IMAGE,
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={
            "epochs": 60,
            "lr": 0.005,
            "batch_size": 64,
            "patience": 10,
            "lr_schedule": "cosine",
            "augment": True,
        },
        image_inputs=("x",),
    ),
    ModelSpec(
        name="multimodal",
        description="two named inputs (8x8 digit image, 16-value ink profile) fused by concatenation",
        task="classification",
        build=Ref("edgepipe.models.multimodal:ImageAndProfile"),
        dataset=Ref("edgepipe.models.multimodal:digits_with_profile"),
        inputs=(InputSpec("image", (1, 1, 8, 8), "float32", "NCHW"), InputSpec("profile", (1, 16), "float32", "NC")),
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={"epochs": 40, "lr": 0.003, "batch_size": 64, "patience": 8},
    ),
    ModelSpec(
        name="lstm_digits",
        description="LSTM over the digits' 8 rows as an 8-step sequence",
        task="classification",
        build=Ref("edgepipe.models.recurrent_digits:build_lstm"),
        dataset=DIGITS_ROWS,
        inputs=DIGIT_ROWS,
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults=RECURRENT_TRAINING,
    ),
    ModelSpec(
        name="gru_digits",
        description="GRU over the digits' 8 rows as an 8-step sequence",
        task="classification",
        build=Ref("edgepipe.models.recurrent_digits:build_gru"),
        dataset=DIGITS_ROWS,
        inputs=DIGIT_ROWS,
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults=RECURRENT_TRAINING,
    ),
    ModelSpec(
        name="text_bilstm",
        description="Embedding + bidirectional LSTM on seeded synthetic keyword sequences (4 classes)",
        task="classification",
        build=Ref("edgepipe.models.text_bilstm:BiLstmClassifier"),
        dataset=Ref("edgepipe.models.synthetic:token_sequences"),
        inputs=(InputSpec("tokens", (1, SEQ_LEN), "int64", "NT"),),
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={"epochs": 40, "lr": 0.005, "batch_size": 64, "patience": 8, "grad_clip_norm": 1.0},
    ),
    ModelSpec(
        name="tiny_transformer",
        description="2-layer transformer encoder (LayerNorm, 4-head attention, GELU) over the digits' 8 rows",
        task="classification",
        build=Ref("edgepipe.models.tiny_transformer:RowTransformer"),
        dataset=DIGITS_ROWS,
        inputs=DIGIT_ROWS,
        metric=CLASSIFICATION,
        primary_metric="accuracy",
        train_defaults={
            "epochs": 60,
            "lr": 0.002,
            "batch_size": 64,
            "patience": 10,
            "grad_clip_norm": 1.0,
            "lr_schedule": "cosine",
        },
    ),
):
    register(spec)

__all__ = ["MODELS", "get_model"]
