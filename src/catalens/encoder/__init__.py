"""The CLIP encoder: the only package that imports torch and transformers (and, in
:mod:`~catalens.encoder.openvino` only, openvino and nncf).

One job per module: :mod:`~catalens.encoder.files` finds the model,
:mod:`~catalens.encoder.policy` chooses device, runtime and precision,
:mod:`~catalens.encoder.check` holds the images of the load-time check,
:mod:`~catalens.encoder.image` builds one image tower candidate and checks it,
:mod:`~catalens.encoder.vit` is the image forward pass both runtimes run,
:mod:`~catalens.encoder.torch_tower` and :mod:`~catalens.encoder.openvino` run it,
:mod:`~catalens.encoder.text` builds and checks one text tower candidate,
:mod:`~catalens.encoder.clip` puts them
behind :class:`ClipEncoder`.
"""

from catalens.encoder.clip import ClipEncoder, EncoderInfo
from catalens.encoder.files import ModelNotFound, read_preprocess_spec, resolve_model_dir
from catalens.encoder.policy import (
    MIN_COSINE,
    Device,
    Precision,
    Runtime,
    Tower,
    choose_device,
    cpu_supports_bf16,
)
from catalens.encoder.torch_tower import set_threads as set_torch_threads

__all__ = [
    "MIN_COSINE",
    "ClipEncoder",
    "Device",
    "EncoderInfo",
    "ModelNotFound",
    "Precision",
    "Runtime",
    "Tower",
    "choose_device",
    "cpu_supports_bf16",
    "read_preprocess_spec",
    "resolve_model_dir",
    "set_torch_threads",
]
