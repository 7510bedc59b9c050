"""Real mobile networks from torchvision and timm with random weights, as `real_model_zoo:NAME` factories.

Nothing is downloaded (weights=None / pretrained=False). The torchvision wheel that installs beside
the CPU torch is a CUDA build whose C extension does not load; declaring its two detection ops'
schemas first lets the pure-Python model code import (no classifier or segmenter uses them).
"""

from __future__ import annotations

import functools
import re

import torch

SHAPE = (1, 3, 224, 224)
# name -> (library, builder name)
MODELS = {
    "resnet18": ("torchvision", "resnet18"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "convnext_tiny": ("torchvision", "convnext_tiny"),
    "shufflenet_v2_x1_0": ("torchvision", "shufflenet_v2_x1_0"),
    "regnet_y_400mf": ("torchvision", "regnet_y_400mf"),
    "squeezenet1_1": ("torchvision", "squeezenet1_1"),
    "deeplabv3_mobilenet_v3_large": ("torchvision.segmentation", "deeplabv3_mobilenet_v3_large"),
    "repvit_m0_9": ("timm", "repvit_m0_9"),
    "fastvit_t8": ("timm", "fastvit_t8"),
    "ghostnet_100": ("timm", "ghostnet_100"),
    "deit_tiny_patch16_224": ("timm", "deit_tiny_patch16_224"),
    "levit_128s": ("timm", "levit_128s"),
    "mobilenetv4_conv_small": ("timm", "mobilenetv4_conv_small"),
    "edgenext_xx_small": ("timm", "edgenext_xx_small"),
    "mobilevit_xxs": ("timm", "mobilevit_xxs"),
    "mobilevitv2_050": ("timm", "mobilevitv2_050"),
    # issue 32 measured export memory on these too
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large"),
    "lraspp_mobilenet_v3_large": ("torchvision.segmentation", "lraspp_mobilenet_v3_large"),
    "swin_t": ("torchvision", "swin_t"),
    # issue 32's sweep of mobile- and edge-sized names, a first part: the patterns match 28 torchvision
    # and 462 timm models; these are the smallest of each family not above
    "mnasnet0_5": ("torchvision", "mnasnet0_5"),
    "shufflenet_v2_x0_5": ("torchvision", "shufflenet_v2_x0_5"),
    "squeezenet1_0": ("torchvision", "squeezenet1_0"),
    "efficientnet_b1": ("torchvision", "efficientnet_b1"),
    "mobilenetv3_small_050": ("timm", "mobilenetv3_small_050"),
    "lcnet_050": ("timm", "lcnet_050"),
    "ghostnet_050": ("timm", "ghostnet_050"),
    "tinynet_e": ("timm", "tinynet_e"),
    "mobileone_s0": ("timm", "mobileone_s0"),
    "efficientformerv2_s0": ("timm", "efficientformerv2_s0"),
    "efficientvit_b0": ("timm", "efficientvit_b0"),
    "efficientvit_m0": ("timm", "efficientvit_m0"),
    "repghostnet_050": ("timm", "repghostnet_050"),
    "mobilenetv4_hybrid_medium": ("timm", "mobilenetv4_hybrid_medium"),
    "convnext_atto": ("timm", "convnext_atto"),
    "fastvit_mci0": ("timm", "fastvit_mci0"),
    "tiny_vit_5m_224": ("timm", "tiny_vit_5m_224"),
    "xcit_nano_12_p16_224": ("timm", "xcit_nano_12_p16_224"),
    "mobilevitv2_075": ("timm", "mobilevitv2_075"),
    "semnasnet_050": ("timm", "semnasnet_050"),
}
# Models run at another input than SHAPE: their timm default (pretrained_cfg input_size), as the
# issue that added them reported them. The table's first 17 keep the 224x224 they were measured at.
SHAPES = {
    "mobilevitv2_050": (1, 3, 256, 256),
    "mobilevitv2_075": (1, 3, 256, 256),
    "tinynet_e": (1, 3, 106, 106),
    "mobilenetv4_hybrid_medium": (1, 3, 256, 256),
    "fastvit_mci0": (1, 3, 256, 256),
}


# The sweep (benchmarks/model_sweep.py) takes every torchvision and timm model whose name marks it
# mobile- or edge-sized. A timm model that shares its name with a torchvision one is "timm_NAME".
SWEEP_PATTERN = re.compile(
    r"mobile|efficient|net\w*_0|tiny|small|atto|femto|pico|nano|micro|xxs|lcnet|ghost|mnas|shuffle|squeeze"
)
TIMM_PREFIX = "timm_"

_DECLARED: list = []  # the Library object must stay alive for the schemas to stay declared


def _declare_torchvision_ops() -> None:
    if not _DECLARED:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _DECLARED.append(lib)


@functools.cache
def _torchvision_names() -> dict[str, str]:
    """torchvision's classifier and segmenter names -> their library (listed once per process)."""
    _declare_torchvision_ops()
    import torchvision.models
    import torchvision.models.segmentation

    segmentation = torchvision.models.list_models(module=torchvision.models.segmentation)
    found = {n: "torchvision" for n in torchvision.models.list_models(module=torchvision.models)}
    found.update({n: "torchvision.segmentation" for n in segmentation})
    return found


@functools.cache
def _timm_names() -> tuple[str, ...]:
    """timm's model names, in its own order (listed once per process; torchvision's ops declared first)."""
    _declare_torchvision_ops()
    import timm

    return tuple(timm.list_models())


def sweep_names() -> list[str]:
    """Every torchvision and timm model the sweep's name pattern matches, in the zoo's own naming."""
    torchvision_names = _torchvision_names()
    names = [n for n in sorted(torchvision_names) if SWEEP_PATTERN.search(n)]
    for n in _timm_names():
        if SWEEP_PATTERN.search(n):
            names.append(TIMM_PREFIX + n if n in torchvision_names else n)
    return names


def source(name: str) -> tuple[str, str]:
    """(library, builder name) of a zoo name: MODELS first, then torchvision, then timm."""
    if name in MODELS:
        return MODELS[name]
    torchvision_names = _torchvision_names()
    if name in torchvision_names:
        return torchvision_names[name], name
    builder = name[len(TIMM_PREFIX) :] if name.startswith(TIMM_PREFIX) else name
    if builder in _timm_names():
        return "timm", builder
    raise KeyError(f"{name}: neither in the zoo's MODELS nor a torchvision or timm model name")


def input_shape(name: str) -> tuple[int, ...]:
    """The model's input: SHAPES, else SHAPE for the named zoo, else timm's default input size."""
    if name in SHAPES:
        return SHAPES[name]
    library, builder = source(name)  # imports torchvision first
    if name in MODELS or library != "timm":
        return SHAPE
    import timm

    cfg = timm.models.get_pretrained_cfg(builder)
    return (1, *cfg.input_size) if cfg is not None else SHAPE


def construct(name: str) -> torch.nn.Module:
    """The library's model as it builds it, with random weights."""
    library, builder = source(name)
    _declare_torchvision_ops()
    if library == "timm":
        import timm

        module = timm.create_model(builder, pretrained=False)
    else:
        import torchvision.models
        import torchvision.models.segmentation

        namespace = torchvision.models.segmentation if library.endswith("segmentation") else torchvision.models
        kwargs = {"weights_backbone": None} if library.endswith("segmentation") else {}
        module = getattr(namespace, builder)(weights=None, **kwargs)
    return module


def build(name: str) -> torch.nn.Module:
    """The model in eval mode, seeded by the caller; dead residual branches revived (see below)."""
    module = construct(name)
    # timm zero-initialises the last BatchNorm of residual branches; a converter that folds
    # the dead branches away would then be timed on a smaller graph than the trained model's.
    with torch.no_grad():
        for layer in module.modules():
            if (
                isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)
                and layer.weight is not None
                and not layer.weight.any()
            ):
                layer.weight.fill_(1.0)
    return module.eval()


class _Outputs(torch.nn.Module):
    """Segmentation models return a dict; converters want tensors."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out["out"] if isinstance(out, dict) else out


def example(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    """The seeded example image batch."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def factory(name: str):
    """A zero-argument factory returning (module, example input), as edgepipe takes it."""

    def make():
        module = build(name)
        module = _Outputs(module).eval() if source(name)[0].endswith("segmentation") else module
        return module, example(shape=input_shape(name))

    return make


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        source(name)
    except KeyError as e:
        raise AttributeError(name) from e
    return factory(name)
