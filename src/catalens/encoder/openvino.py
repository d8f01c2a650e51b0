"""The CLIP towers on OpenVINO, for CPUs: the only module that imports openvino/nncf.

Compared with PyTorch on the same CPU, OpenVINO runs the whole tower with fused oneDNN
kernels: fp32 about 1.5×, bf16 (native on AVX-512 BF16/AMX) about 1.3×, and static int8
(quantised with NNCF from calibration images, every Linear and attention matmul on VNNI
int8 kernels) about 1.6× PyTorch's dynamic int8 (``docs/embedding-speed.md``).

The compiled model takes the preprocessed crops as they come from
:func:`catalens.images.preprocess`, ``uint8`` NHWC; the conversion to float, the
normalisation and the layout change run inside the model. Quantised models are cached on
disk under a key of the weights, the calibration images, the quantisation recipe (which
depends on the CPU, see :func:`int8_recipe`) and the library versions, so a restart does
not quantise again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from catalens.encoder import calibration as calibration_images
from catalens.encoder.files import weights_fingerprint
from catalens.encoder.policy import OpenVinoPrecision
from catalens.images import PreprocessSpec

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether OpenVINO (and NNCF, for int8) can be imported here."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


# CPU flags of instructions that multiply u8 by s8 and add straight into int32 lanes.
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the ``/proc/cpuinfo`` text given) has VNNI or AMX int8; where
    it cannot be told (no ``/proc/cpuinfo``), the answer is no, the safe side."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return any(flag in flags for flag in _VNNI_FLAGS)


def int8_recipe(vnni: bool | None = None) -> str:
    """How the int8 tower is quantised on this CPU, for the cache key and the logs.

    Without VNNI, oneDNN's int8 kernels multiply with ``vpmaddubsw``, which adds each pair
    of u8×s8 products into a *saturating int16*: with full-range 8-bit weights, a pair
    can reach 2·255·127 > 32767 and is clamped, silently. So without VNNI every weight is
    quantised to half the int8 range (NNCF's overflow fix on all layers), and no pair can
    clamp. With VNNI, products go straight into int32, and full-range weights (NNCF's
    default: the half range on the first layer only) keep more precision."""
    vnni = cpu_has_vnni() if vnni is None else vnni
    # With VNNI the recipe, and so the cache key, is what it was before the fix.
    return "smoothquant-0.5" if vnni else "smoothquant-0.5 half-range-weights"


def versions() -> str:
    import nncf
    import openvino

    return f"openvino {openvino.__version__}, nncf {nncf.__version__}"


class OpenVinoTower:
    """A compiled image tower: ``uint8`` NHWC crops in, projected (unnormalised) features
    out. Not thread-safe: callers serialise calls (the encoder holds a lock)."""

    def __init__(self, compiled: Any, precision: OpenVinoPrecision) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.precision = precision

    def __call__(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        result = self._request.infer({0: crops}, share_inputs=True)
        return np.array(result[0], dtype=np.float32, copy=True)


def load_image_tower(
    module: Any,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    precision: OpenVinoPrecision,
    calibration: Callable[[], npt.NDArray[np.uint8]],
    cache_dir: Path | None,
    cache_key: str,
    threads: int,
) -> OpenVinoTower:
    """Convert ``module`` (a torch module: float NCHW pixel values → features), quantise it
    when ``precision`` is int8 (``calibration`` gives ``uint8`` NHWC crops; called only
    when no cached model exists), add the
    normalisation in front, and compile it for the CPU."""
    import openvino as ov

    core = ov.Core()
    cached = _cache_path(cache_dir, cache_key, precision)
    if cached is not None and cached.exists():
        log.info("image tower (%s) from cache %s", precision, cached)
        model = core.read_model(cached)
    else:
        model = _convert(module, size)
        if precision == "int8":
            model = _quantise(model, _normalised(calibration(), mean, std))
        model = _with_normalisation(model, mean, std)
        if cached is not None:
            _save(model, cached, cache_key)
    return OpenVinoTower(
        core.compile_model(model, "CPU", _config(core, precision, threads)), precision
    )


class OpenVinoText:
    """A compiled text tower: token ids and attention mask in, projected (unnormalised)
    features out. Not thread-safe: callers serialise calls (the encoder holds a lock)."""

    def __init__(self, compiled: Any) -> None:
        self._request = compiled.create_infer_request()

    def __call__(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        result = self._request.infer({0: input_ids, 1: attention_mask})
        return np.array(result[0], dtype=np.float32, copy=True)


def load_text_tower(
    module: Any,
    *,
    example: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    precision: OpenVinoPrecision,
    threads: int,
) -> OpenVinoText:
    """Convert ``module`` (a torch module: token ids, attention mask → features), with any
    batch size and length, and compile it for the CPU.

    int8 here is weight-only compression (NNCF, per output channel, asymmetric): the
    weights are stored in int8 and widened inside the kernels, activations stay float.
    It needs no calibration data and takes seconds, so nothing is cached; for one query
    the tower reads a quarter of the bytes, which is what its time is made of."""
    import openvino as ov
    import torch

    core = ov.Core()
    tensors = tuple(torch.from_numpy(a) for a in example)
    model = _trace(module, tensors, [ov.PartialShape([-1, -1])] * 2)
    if precision == "int8":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return OpenVinoText(core.compile_model(model, "CPU", _config(core, precision, threads)))


def _config(core: Any, precision: OpenVinoPrecision, threads: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
    }
    if precision != "fp32" and not _native_bf16(core):
        config["INFERENCE_PRECISION_HINT"] = "f32"  # int8 kernels, float parts in f32
    return config


def cache_key(model_dir: Path, spec: PreprocessSpec, calibration_folder: Path | None) -> str:
    """What the quantised tower depends on: the tower's code, the int8 recipe (it depends
    on the CPU), the weights, the preprocessing, the calibration images and the library
    versions. A cached model is loaded only under an equal key."""
    return "\n".join(
        [
            f"image-tower-v2 class-token-last-block {int8_recipe()}",
            str(model_dir.resolve()),
            *weights_fingerprint(model_dir),
            repr(spec),
            calibration_images.fingerprint(calibration_folder),
            versions(),
        ]
    )


def _convert(module: Any, size: int) -> Any:
    import openvino as ov
    import torch

    example = torch.zeros(1, 3, size, size)
    return _trace(module, example, [ov.PartialShape([-1, 3, size, size])])


def _trace(module: Any, example: Any, shapes: list[Any]) -> Any:
    import openvino as ov
    import torch
    from torch.jit._trace import TracerWarning

    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns of Python branches on shapes; the shapes given stay dynamic.
        warnings.simplefilter("ignore", TracerWarning)
        return ov.convert_model(module, example_input=example, input=shapes)


def _quantise(model: Any, calibration: npt.NDArray[np.float32]) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    batches = [calibration[i : i + 8] for i in range(0, len(calibration), 8)]
    vnni = cpu_has_vnni()
    log.info(
        "quantising the image tower to int8 on %d calibration images: %s",
        len(calibration),
        int8_recipe(vnni),
    )
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),  # NNCF counts dataset items, here batches of 8
        # Moves activation outliers into the weights before quantising (SmoothQuant).
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.5),
            # See int8_recipe: half-range weights where int16 sums would saturate.
            overflow_fix=OverflowFix.FIRST_LAYER if vnni else OverflowFix.ENABLE,
        ),
    )


def _normalised(
    crops: npt.NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]
) -> npt.NDArray[np.float32]:
    pixels = crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((pixels - m) / s)


def _with_normalisation(model: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """Take ``uint8`` NHWC; convert, normalise and transpose inside the model."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(
        [255.0 * m for m in mean]
    ).scale([255.0 * s for s in std])
    return ppp.build()


def _native_bf16(core: Any) -> bool:
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


def _cache_path(cache_dir: Path | None, key: str, precision: str) -> Path | None:
    if cache_dir is None or precision != "int8":  # only quantising is worth caching
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "openvino" / digest / f"image-{precision}.xml"


def _save(model: Any, path: Path, key: str) -> None:
    """Write atomically: a crash mid-write leaves no half model for the next start."""
    import openvino as ov

    try:
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent.parent))
        ov.save_model(model, staging / path.name, compress_to_fp16=False)
        (staging / "key.json").write_text(json.dumps({"key": key}, indent=1))
        try:
            os.replace(staging, path.parent)
        except OSError:  # another process saved it first
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        log.warning("could not cache the quantised image tower in %s: %s", path.parent, exc)
