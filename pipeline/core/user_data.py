"""A user's own data for calibration and evaluation: an .npz, a folder of images, or `pkg.module:function`.

Every source yields arrays in the model's own (ONNX / PyTorch) input layout, one array per
input name, first axis the samples, checked against the model's inputs before any work.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from edgepipe.models.shared.errors import ConfigError, InputFileError, UserCodeError
from edgepipe.models.shared.specs import InputSpec
from edgepipe.pipeline.core.store import sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
LABELS = "labels"  # the array (or the second item of a function's pairs) that holds an eval set's labels
_FUNCTION = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def is_function_ref(source: str) -> bool:
    """'pkg.module:function' (and not a path that happens to hold a colon)."""
    return bool(re.match(_FUNCTION, source)) and not Path(source).exists()


def fingerprint(source: str | None) -> str | None:
    """What the cache key holds for a data source: file contents, a folder's files, or a function's module file."""
    if not source:
        return None
    if is_function_ref(source):
        from edgepipe.pipeline.core.user_models import import_user_module

        module = import_user_module(source.split(":")[0], source, InputFileError)
        path = getattr(module, "__file__", None)
        return f"{source}@{sha256_file(Path(path)) if path else 'builtin'}"
    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        # class subfolders count: a label is the folder an image sits in
        for image in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            digest.update(f"{image.relative_to(path)}:{sha256_file(image)}\n".encode())
        return digest.hexdigest()
    return sha256_file(path) if path.is_file() else None


def load_samples(
    source: str, specs: tuple[InputSpec, ...], what: str, images=None, minimum: int = 1, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Samples for every input, in the model's layout; a clear InputFileError for anything that does not fit."""
    if is_function_ref(source):
        arrays = _from_function(source, specs, what, pairs=False)[0]
    else:
        path = Path(source)
        if path.is_dir():
            arrays = _from_images(path, specs, what, images)
        elif path.is_file():
            arrays = _from_npz(path, what)
        else:
            raise InputFileError(
                f"{what} data {source} not found; give an .npz, a folder of images or pkg.module:function"
            )
    return _checked(arrays, specs, f"{what} data {source}", minimum, limit)


def load_eval(source: str, specs: tuple[InputSpec, ...], images=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(inputs, labels) of a user's evaluation set."""
    return load_labelled(source, specs, "--eval-data", images)


def load_labelled(
    source: str, specs: tuple[InputSpec, ...], what: str, images=None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(inputs, labels): an .npz with a 'labels' array, a folder with one subfolder of images per class
    (labels numbered in the subfolders' sorted order), or a function of (sample, label) pairs."""
    path = Path(source)
    if is_function_ref(source):
        arrays, labels = _from_function(source, specs, what, pairs=True)
    elif path.is_dir():
        classes = sorted(p for p in path.iterdir() if p.is_dir())
        if not classes:
            raise InputFileError(
                f"{what} {source} is a folder without subfolders; give one subfolder of images per class"
            )
        parts = [_from_images(folder, specs, what, images) for folder in classes]
        arrays = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        labels = np.concatenate([np.full(len(next(iter(p.values()))), i, np.int64) for i, p in enumerate(parts)])
    else:
        if not path.is_file():
            raise InputFileError(
                f"{what} {source} not found; give an .npz with one array per input and {LABELS!r}, a folder "
                "with one subfolder of images per class, or pkg.module:function returning (sample, label) pairs"
            )
        arrays = _from_npz(path, what)
        if LABELS not in arrays:
            raise InputFileError(
                f"{what} {source} has no {LABELS!r} array (has {', '.join(arrays)}); "
                f"add the labels as {LABELS!r}, first axis the samples"
            )
        labels = arrays.pop(LABELS)
    inputs = _checked(arrays, specs, f"{what} {source}", 1, None)
    count = len(next(iter(inputs.values())))
    if len(labels) != count:
        raise InputFileError(f"{what} {source}: {len(labels)} labels for {count} samples; give one label per sample")
    return inputs, np.asarray(labels)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy: arg-max over the class axis (axis 1, channels-first as outputs come back), per label."""
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    if outputs.ndim == labels.ndim + 1:
        predicted = outputs.argmax(axis=1)  # (N, C) logits or (N, C, H, W) segmentation maps
    else:
        predicted = outputs.reshape(len(labels), -1).argmax(axis=1)
    if predicted.shape != labels.shape:
        raise InputFileError(f"--eval-data labels have shape {labels.shape}, the model's predictions {predicted.shape}")
    return {"accuracy": float((predicted == labels).mean())}


def _from_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(
            f"{what} data {path} is not a readable .npz ({str(exc)[:160]}); "
            "save it with numpy.savez(path, input_name=array, ...)"
        ) from None


def _from_function(ref: str, specs: tuple[InputSpec, ...], what: str, pairs: bool):
    """Call the function; each item is a sample (dict by input name, tuple in input order, or an
    array) or (sample, label)."""
    module_name, attr = ref.split(":")
    from edgepipe.pipeline.core.user_models import import_user_module

    function = getattr(import_user_module(module_name, ref, InputFileError), attr, None)
    if not callable(function):
        raise InputFileError(f"{what} {ref}: {module_name} has no callable {attr!r}")
    try:
        items = list(function())
    except Exception as exc:  # the user's code may raise anything
        raise UserCodeError(f"{what} {ref}", exc) from exc
    names = [s.name for s in specs]
    collected: dict[str, list] = {n: [] for n in names}
    labels = []
    for i, item in enumerate(items):
        if pairs:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise InputFileError(f"{what} {ref}: item {i} is not a (sample, label) pair")
            item, label = item
            labels.append(np.asarray(label))
        sample = (
            item if isinstance(item, dict) else dict(zip(names, item if isinstance(item, (tuple, list)) else (item,)))
        )
        unknown = sorted(set(sample) - set(names))
        if unknown:
            raise InputFileError(
                f"{what} {ref}: item {i} names input(s) {', '.join(unknown)}; the model takes {', '.join(names)}"
            )
        for name in names:
            if name not in sample:
                raise InputFileError(f"{what} {ref}: item {i} has no value for input {name!r}")
            collected[name].append(np.asarray(sample[name]))
    if not items:
        raise InputFileError(f"{what} {ref} yielded no samples")
    spec_of = {s.name: s for s in specs}
    arrays = {}
    for name, values in collected.items():
        # A sample may leave out the batch axis of 1 the model's example has.
        values = [v[None] if v.shape == tuple(spec_of[name].shape[1:]) else v for v in values]
        shapes = {v.shape for v in values}
        if len(shapes) != 1:
            raise InputFileError(
                f"{what} {ref}: input {name!r} has samples of shapes {sorted(shapes)[:3]}; "
                "give every sample the same shape"
            )
        arrays[name] = np.concatenate(values)
    return arrays, (np.concatenate([np.atleast_1d(lb) for lb in labels]) if pairs else None)


def _from_images(folder: Path, specs: tuple[InputSpec, ...], what: str, settings) -> dict[str, np.ndarray]:
    """Decode, resize and normalise every image into the model's one image input."""
    from PIL import Image, UnidentifiedImageError

    images = [s for s in specs if len(s.shape) == 4 and s.dtype.startswith("float")]
    if len(specs) != 1 or not images:
        raise InputFileError(
            f"{what} data {folder} is a folder of images, but the model's inputs are "
            f"{', '.join(f'{s.name} {s.shape}' for s in specs)}; a folder feeds one float "
            "image input (N, C, H, W) or (N, H, W, C); give an .npz instead"
        )
    spec = images[0]
    layout = (
        settings.layout
        if settings and settings.layout != "auto"
        else (spec.layout if spec.layout in ("NCHW", "NHWC") else "NCHW")
    )
    channels = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    height, width = (spec.shape[2], spec.shape[3]) if layout == "NCHW" else (spec.shape[1], spec.shape[2])
    if channels not in (1, 3):
        raise InputFileError(
            f"{what} data {folder}: input {spec.name!r} {spec.shape} read as {layout} has "
            f"{channels} channels; images give 1 or 3 (set the image layout if it is the other one)"
        )
    mean = np.asarray(settings.mean if settings else (0.0,) * channels, np.float32)
    std = np.asarray(settings.std if settings else (1.0,) * channels, np.float32)
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise ConfigError(
            f"{what} image mean/std have {mean.size}/{std.size} values; the input has {channels} channels"
        )
    files = _images(folder)
    if not files:
        raise InputFileError(f"{what} data {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    samples = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, np.float32).reshape(height, width, channels)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputFileError(
                f"{what} data: image {file} cannot be read ({str(exc)[:120]}); remove or replace it"
            ) from None
        scale = settings.pixel_scale if settings else 255.0
        samples.append((pixels / scale - mean) / std)
    batch = np.stack(samples)  # N, H, W, C
    return {spec.name: np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if layout == "NCHW" else batch)}


def _checked(
    arrays: dict[str, np.ndarray], specs: tuple[InputSpec, ...], where: str, minimum: int, limit: int | None
) -> dict[str, np.ndarray]:
    """Every input present, shaped and typed as the model takes it, with at least `minimum` samples."""
    names = [s.name for s in specs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputFileError(
            f"{where} has no array for input(s) {', '.join(map(repr, missing))} (has "
            f"{', '.join(map(repr, arrays)) or 'none'}); name each array after a model input"
        )
    out = {}
    for spec in specs:
        value = np.asarray(arrays[spec.name])
        if value.shape[1:] != tuple(spec.shape[1:]):
            raise InputFileError(
                f"{where}: input {spec.name!r} has samples of shape {value.shape[1:]}, the model "
                f"takes {tuple(spec.shape[1:])} (first axis: the samples)"
            )
        expected_float = np.dtype(spec.dtype).kind == "f"
        if (value.dtype.kind == "f") != expected_float or value.dtype.kind not in "fiub":
            raise InputFileError(f"{where}: input {spec.name!r} is {value.dtype}, the model takes {spec.dtype}")
        out[spec.name] = np.ascontiguousarray(value[:limit]).astype(spec.dtype)
    counts = {len(v) for v in out.values()}
    if len(counts) != 1:
        raise InputFileError(f"{where}: inputs hold different sample counts {sorted(counts)}; give each the same")
    count = counts.pop()
    if count < minimum:
        raise InputFileError(
            f"{where} holds {count} sample(s); calibration needs at least {minimum} "
            "for activation ranges that hold beyond a handful of inputs"
        )
    return out


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
