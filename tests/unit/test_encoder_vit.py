"""The hand-written ViT forward pass against Hugging Face's ``get_image_features``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPModel

from catalens.encoder.vit import ImageModule


def test_the_last_block_runs_for_the_class_token_only_and_gives_the_same_vector(
    tiny_model: Path,
) -> None:
    model = CLIPModel.from_pretrained(tiny_model).eval()
    tower = ImageModule(model.vision_model, model.visual_projection)
    size = model.config.vision_config.image_size
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    tokens: list[int] = []  # how many tokens each layer's MLP saw
    hooks = [
        layer.mlp.register_forward_hook(lambda _m, args, _out: tokens.append(args[0].shape[1]))
        for layer in model.vision_model.encoder.layers
    ]
    try:
        with torch.no_grad():
            ours = tower(pixels)
            tokens_ours = tokens[:]
            tokens.clear()
            theirs = model.get_image_features(pixel_values=pixels)
    finally:
        for hook in hooks:
            hook.remove()
    theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    patches = (size // model.config.vision_config.patch_size) ** 2
    assert tokens == [patches + 1] * len(tokens_ours)
    assert tokens_ours == [patches + 1] * (len(tokens) - 1) + [1]
