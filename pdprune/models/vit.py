"""A small Vision Transformer (Dosovitskiy et al.) for small images, random init.

Written out rather than torchvision's VisionTransformer: torchvision's attention is one
nn.MultiheadAttention whose packed in-projection cannot be cut head by head. Here every block
has plain q / k / v / proj Linear layers and an fc1 / fc2 MLP, the layout head pruning
(pdprune/pruning/structures/heads.py) and Torch-Pruning's ViT examples slice. The head count
is read from the tensors in the forward (`-1` in the reshape), so a model whose heads were
removed runs as it is.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

# (embedding dim, heads, MLP hidden) of the two standard sizes; 12 layers each
SIZES = {"vit_tiny": (192, 3, 768), "vit_small": (384, 6, 1536)}


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (layer(x).reshape(b, n, -1, self.head_dim).transpose(1, 2)
                   for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding (a strided conv), a class token, learned positions, `depth` blocks and a
    linear head on the class token."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dim: int,
                 num_heads: int, depth: int, mlp_dim: int, patch_size: int):
        super().__init__()
        channels, height, width = input_shape
        self.patch_embed = nn.Conv2d(channels, dim, patch_size, stride=patch_size)
        patches = (height // patch_size) * (width // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (b, patches, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def auto_patch_size(height: int, width: int) -> int:
    """The largest of 16, 8, 4, 2, 1 that divides the image and leaves a grid of at least 7x7
    patches (4x4 under 16 px): 224 px -> 16, 64 -> 8, 32 -> 4, 28 -> 4, 8 -> 2."""
    side = min(height, width)
    grid = 4 if side < 16 else 7
    for patch in (16, 8, 4, 2):
        if height % patch == 0 and width % patch == 0 and side // patch >= grid:
            return patch
    return 1


def build_vit(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    dim, heads, mlp_dim = SIZES[cfg.name]
    _, height, width = input_shape
    patch = cfg.get("patch_size") or auto_patch_size(height, width)
    if height % patch or width % patch:
        raise ConfigError("model.patch_size", patch, f"does not divide the {height}x{width} "
                          "images")
    depth = cfg.get("depth", 12)
    if depth < 1:
        raise ConfigError("model.depth", depth, "must be at least 1")
    return VisionTransformer(tuple(input_shape), num_classes, dim, heads, depth, mlp_dim, patch)
