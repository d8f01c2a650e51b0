"""The CLIP ViT image forward pass, written out so the last block can skip work.

Hugging Face's CLIP vision forward, except that the last block computes the class token
only. The image vector is the class token's final state, and nothing else of that block
reaches it: its queries, output projection and MLP run for 1 token instead of 50 (keys
and values still for all). For ViT-B/32 that skips about 7 % of the work for the same
vector (``docs/embedding-speed.md``). Both runtimes run this module: PyTorch directly,
OpenVINO after converting it.
"""

from __future__ import annotations

from typing import Any

import torch


class ImageModule(torch.nn.Module):
    """Normalised NCHW pixel values → projected (unnormalised) image features, equal to
    ``CLIPModel.get_image_features`` up to float rounding."""

    def __init__(self, vision: torch.nn.Module, projection: torch.nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.projection = projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision: Any = self.vision  # Hugging Face's attributes are not typed
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        *blocks, last = vision.encoder.layers
        for block in blocks:
            hidden = _block(block, hidden)
        cls = _block(last, hidden, queries=1)[:, 0]
        return self.projection(vision.post_layernorm(cls))  # type: ignore[no-any-return]


def _block(layer: Any, hidden: torch.Tensor, *, queries: int | None = None) -> torch.Tensor:
    """One CLIP encoder layer (pre-norm attention, then pre-norm MLP) for the first
    ``queries`` tokens of ``hidden`` (default: all), attending over all of them. Layer
    norms and the MLP work token by token, so a prefix of tokens gives a prefix of the
    full layer's output."""
    attention = layer.self_attn
    split = (int(attention.num_heads), int(attention.head_dim))

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, T, H·D) → (B, H, T, D)
        split_heads: torch.Tensor = x.unflatten(-1, split)
        return split_heads.transpose(1, 2)

    normed = layer.layer_norm1(hidden)
    if queries is not None:
        hidden, asking = hidden[:, :queries], normed[:, :queries]
    else:
        asking = normed
    attended = torch.nn.functional.scaled_dot_product_attention(
        heads(attention.q_proj(asking)),
        heads(attention.k_proj(normed)),
        heads(attention.v_proj(normed)),
        scale=attention.scale,
    )
    out = hidden + attention.out_proj(attended.transpose(1, 2).flatten(2))
    return out + layer.mlp(layer.layer_norm2(out))  # type: ignore[no-any-return]
