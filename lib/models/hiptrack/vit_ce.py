"""One-stream ViT backbone with candidate elimination (OSTrack / HIPTrack).

Template and search images are patch-embedded, given their own position embeddings and
concatenated (template first) into one token sequence that a plain ViT processes jointly.
Blocks listed in ``ce_loc`` drop the search tokens the template centre attends to least; the
output restores the full search grid with zeros at eliminated positions.

Parameter names follow the released HIPTrack / OSTrack checkpoints (``pos_embed_z``,
``pos_embed_x``, ``temporal_pos_embed_*``, ``blocks.N.attn.qkv`` ...), so those load strictly.
The 224-pixel ``pos_embed`` and ``cls_token`` of the pre-training model are kept (unused in the
forward pass) because the released checkpoints contain them and they seed ``pos_embed_z/x``.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from torch import nn

from lib.models.layers.attn_blocks import CEBlock

PRETRAIN_IMG_SIZE = 224  # grid of the ImageNet / MAE position embedding


@dataclass(frozen=True)
class ViTSpec:
    """Size of a ViT variant."""
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: float = 4.0


class VisionTransformerCE(nn.Module):
    """ViT over concatenated template and search tokens, with candidate elimination."""

    def __init__(self, spec: ViTSpec, template_size: int, search_size: int,
                 ce_loc: list[int] | tuple[int, ...] = (), ce_keep_ratio: list[float] | tuple[float, ...] = (),
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if len(ce_loc) != len(ce_keep_ratio):
            raise ValueError(f"CE_LOC {list(ce_loc)} and CE_KEEP_RATIO {list(ce_keep_ratio)} differ in length")
        if any(not 0 <= i < spec.depth for i in ce_loc):
            raise ValueError(f"CE_LOC {list(ce_loc)} must index blocks 0..{spec.depth - 1}")
        self.spec = spec
        self.embed_dim = spec.embed_dim
        self.patch_size = spec.patch_size
        self.template_grid = template_size // spec.patch_size
        self.search_grid = search_size // spec.patch_size
        dim = spec.embed_dim

        self.patch_embed = PatchEmbed(img_size=None, patch_size=spec.patch_size, in_chans=3, embed_dim=dim)
        pretrain_tokens = (PRETRAIN_IMG_SIZE // spec.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pretrain_tokens + 1, dim))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.template_grid ** 2, dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.search_grid ** 2, dim))
        self.temporal_pos_embed_z = nn.Parameter(torch.zeros(1, 1, dim))
        self.temporal_pos_embed_x = nn.Parameter(torch.zeros(1, 1, dim))

        keep = dict(zip(ce_loc, ce_keep_ratio))
        rates = torch.linspace(0, drop_path_rate, spec.depth).tolist()
        self.ce_loc = list(ce_loc)
        self.blocks = nn.Sequential(*[
            CEBlock(dim, spec.num_heads, spec.mlp_ratio, drop_path=rates[i], keep_ratio=keep.get(i, 1.0))
            for i in range(spec.depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.pos_embed, self.temporal_pos_embed_z, self.temporal_pos_embed_x):
            trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.reset_search_template_pos_embed()

    @torch.no_grad()
    def reset_search_template_pos_embed(self) -> None:
        """Derive ``pos_embed_z`` / ``pos_embed_x`` from the 224-pixel ``pos_embed`` (bicubic).

        Same resampling as the original's ``finetune_track``: bicubic, no anti-aliasing.
        """
        old = PRETRAIN_IMG_SIZE // self.patch_size
        for name, grid in (("pos_embed_z", self.template_grid), ("pos_embed_x", self.search_grid)):
            new = resample_abs_pos_embed(self.pos_embed.data, [grid, grid], [old, old],
                                         num_prefix_tokens=1, antialias=False)[:, 1:]
            getattr(self, name).data.copy_(new)

    def embed_template(self, z: torch.Tensor) -> torch.Tensor:
        """Template image (B, 3, Hz, Wz) -> tokens (B, Lz, C) with position embeddings."""
        return self.patch_embed(z) + self.pos_embed_z + self.temporal_pos_embed_z

    def embed_search(self, x: torch.Tensor) -> torch.Tensor:
        """Search image (B, 3, Hx, Wx) -> tokens (B, Lx, C) with position embeddings."""
        return self.patch_embed(x) + self.pos_embed_x + self.temporal_pos_embed_x

    def forward(self, z: torch.Tensor | None, x: torch.Tensor, template_mask: torch.Tensor | None = None,
                keep_rate: float | None = None, z_tokens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Joint feature extraction of template ``z`` and search ``x``.

        Args:
            z: template image (B, 3, Hz, Wz); may be None when ``z_tokens`` is given.
            x: search image (B, 3, Hx, Wx).
            template_mask: (B, Lz) bool, template queries whose attention decides CE
                (None: all template tokens).
            keep_rate: scheduled keep ratio overriding the blocks' own (training warm-up).
            z_tokens: cached ``embed_template(z)``, skips re-embedding a constant template.

        Returns:
            tokens (B, Lz + Lx, C): template tokens, then the full search grid in raster order
            with zeros at eliminated positions; and the removed search indices of each CE block
            that eliminated tokens, each (B, n_removed) long.
        """
        z_tokens = self.embed_template(z) if z_tokens is None else z_tokens
        x_tokens = self.embed_search(x)
        B, num_template, num_search = x.shape[0], z_tokens.shape[1], x_tokens.shape[1]
        tokens = torch.cat([z_tokens.expand(B, -1, -1), x_tokens], dim=1)
        global_index = torch.arange(num_search, device=x.device).expand(B, -1)
        removed: list[torch.Tensor] = []
        for block in self.blocks:
            tokens, global_index, removed_index = block(tokens, num_template, global_index, template_mask, keep_rate)
            if removed_index is not None:
                removed.append(removed_index)
        tokens = self.norm(tokens)
        search = tokens[:, num_template:]
        if search.shape[1] < num_search:  # put kept tokens back on the grid, zeros elsewhere
            full = search.new_zeros(B, num_search, search.shape[-1])
            search = full.scatter(1, global_index.unsqueeze(-1).expand(-1, -1, search.shape[-1]), search)
        return torch.cat([tokens[:, :num_template], search], dim=1), removed


VIT_SPECS: dict[str, ViTSpec] = {
    "vit_base_patch16_224_ce": ViTSpec(embed_dim=768, depth=12, num_heads=12),
    "vit_large_patch16_224_ce": ViTSpec(embed_dim=1024, depth=24, num_heads=16),
    # tiny variant for CPU tests and demos; not a pre-trained architecture
    "vit_tiny_test_ce": ViTSpec(embed_dim=64, depth=4, num_heads=4),
}


def build_vit_ce(name: str, template_size: int, search_size: int, ce_loc=(), ce_keep_ratio=(),
                 drop_path_rate: float = 0.0) -> VisionTransformerCE:
    """Construct a registered ViT-CE variant by name (``MODEL.BACKBONE.TYPE``)."""
    if name not in VIT_SPECS:
        raise ValueError(f"unknown backbone {name!r}; registered: {sorted(VIT_SPECS)}")
    return VisionTransformerCE(VIT_SPECS[name], template_size, search_size, ce_loc, ce_keep_ratio, drop_path_rate)


# -- template masks for candidate elimination -------------------------------------------
def ctr_point_mask(grid: int, batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, grid*grid) bool selecting the template's centre token for candidate elimination."""
    mask = torch.zeros(batch, grid, grid, dtype=torch.bool, device=device)
    mask[:, (grid - 1) // 2, (grid - 1) // 2] = True
    return mask.flatten(1)


def template_ce_mask(cfg, grid: int, batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The CE template mask for ``MODEL.BACKBONE.CE_TEMPLATE_RANGE`` (None = every template token)."""
    if cfg.MODEL.BACKBONE.CE_TEMPLATE_RANGE == "CTR_POINT":
        return ctr_point_mask(grid, batch, device)
    return None
