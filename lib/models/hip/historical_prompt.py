"""Historical prompt network of HIPTrack (Cai et al., CVPR 2024).

Past search frames are stored as (key, value) maps in a memory bank, in the manner of STCN
(Cheng et al., NeurIPS 2021): the key is a projection of the backbone's search feature map, the
value encodes the frame image together with a mask of the predicted target (a ResNet-18 stem
fused with the backbone features through a CBAM block). A new frame's key reads the memory with
an L2 affinity; the read-out, concatenated with a compressed copy of the frame's own features,
is the historical prompt that is added to the search features before the box head.

Module and parameter names match the released checkpoints (``HIP.encoder.fuser.attention.
ChannelGate.mlp.1.weight`` ...), hence the CamelCase attribute names of the CBAM gates.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

RESNET18_WIDTH = 64  # channels of ResNet-18's conv1; its stages are w, w, 2w, 4w (layer3: 256, stride 16)


def stem_channels(stem_width: int) -> int:
    """Channels of the memory encoder's stem output (its layer3) for a stem of width ``stem_width``."""
    return 4 * stem_width


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with bias (the original's ResNet keeps conv biases)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, identity or 1x1-conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def resnet_layer(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch))


class ResBlock(nn.Module):
    """Pre-activation residual block x + conv(relu(conv(relu(x)))), 3x3 conv shortcut if dims change."""

    def __init__(self, in_ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.downsample = None if in_ch == out_ch else conv3x3(in_ch, out_ch)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        return (x if self.downsample is None else self.downsample(x)) + r


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP over global average- and max-pooled features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialConv(nn.Module):
    """Holder that gives the 7x7 gate conv its checkpoint name ``spatial.conv``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention from channel-wise max and mean maps."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = SpatialConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al., ECCV 2018): channel then spatial gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse image-stem features with backbone features into a memory value."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block1 = ResBlock(in_ch, out_ch)
        self.attention = CBAM(out_ch)
        self.block2 = ResBlock(out_ch, out_ch)

    def forward(self, stem: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = self.block1(torch.cat([stem, features], dim=1))
        return self.block2(x + self.attention(x))


class MemoryEncoder(nn.Module):
    """Value encoder: ResNet-18 stem (conv1..layer3) on image + mask, fused with backbone features.

    ``stem_width`` scales every stem stage (64 = ResNet-18, what released checkpoints hold); a
    narrower stem makes the tiny CPU configs several times cheaper to train, since at small
    backbones these convolutions dominate the training step.
    """

    def __init__(self, feature_dim: int, value_dim: int, stem_width: int = RESNET18_WIDTH) -> None:
        super().__init__()
        w = stem_width
        self.stem_channels = stem_channels(w)
        self.conv1 = nn.Conv2d(4, w, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = resnet_layer(w, w, 1)
        self.layer2 = resnet_layer(w, 2 * w, 2)
        self.layer3 = resnet_layer(2 * w, self.stem_channels, 2)
        self.fuser = FeatureFusionBlock(feature_dim + self.stem_channels, value_dim)
        stem_modules = [self.conv1, *self.layer1.modules(), *self.layer2.modules(), *self.layer3.modules()]
        for m in stem_modules:  # He init as the original ResNet; the fuser keeps PyTorch's default
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)

    def stem(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) and target mask (B, 1, H, W) -> (B, 4 * stem_width, H/16, W/16)."""
        x = F.relu(self.bn1(self.conv1(torch.cat([image, mask.to(image.dtype)], dim=1))))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, image: torch.Tensor, features: torch.Tensor, mask: torch.Tensor | None,
                stem: torch.Tensor | None = None) -> torch.Tensor:
        """Memory value (B, value_dim, H/16, W/16); pass ``stem`` to reuse a cached stem output (``image``
        and ``mask`` are then not read)."""
        stem = self.stem(image, mask) if stem is None else stem
        return self.fuser(stem, features)

    def load_torchvision_resnet18(self, path: str | Path) -> None:
        """Initialise the stem from a torchvision ResNet-18 ImageNet state dict file.

        The extra mask input channel of ``conv1`` gets an orthogonal init, as the original did
        with its ImageNet download; conv biases (absent in torchvision) stay zero.
        """
        from lib.utils.checkpoint import extract_state_dict, read_checkpoint
        state, _ = extract_state_dict(read_checkpoint(path), path)
        own = self.state_dict()
        loaded = []
        for name, value in state.items():
            if name not in own or name.startswith("fuser"):
                continue
            if name == "conv1.weight" and value.shape[1] == 3:
                extra = torch.empty(value.shape[0], 1, *value.shape[2:])
                nn.init.orthogonal_(extra)
                value = torch.cat([value, extra], dim=1)
            if own[name].shape != value.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, expected {tuple(own[name].shape)}")
            own[name] = value
            loaded.append(name)
        if not loaded:
            raise ValueError(f"{path} holds no ResNet-18 stem weights (conv1, bn1, layer1-3)")
        self.load_state_dict(own)
        conv_biases = {f"{name}.bias" for name, m in self.named_modules() if isinstance(m, nn.Conv2d)}
        missing = [k for k in own if not k.startswith("fuser") and k not in loaded and k not in conv_biases
                   and not k.endswith("num_batches_tracked")]
        logger.info("memory encoder stem: loaded %d tensors from %s", len(loaded), path)
        if missing:
            logger.warning("memory encoder stem: %d tensors not in %s keep their init: %s", len(missing), path,
                           ", ".join(missing))


class KeyProjection(nn.Module):
    """3x3 conv from backbone features to memory keys (orthogonal init, zero bias)."""

    def __init__(self, in_ch: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = conv3x3(in_ch, key_dim)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_proj(x)


class HistoricalPromptNetwork(nn.Module):
    """Holds the memory encoder (the only learned part); reading memory is parameter-free."""

    def __init__(self, feature_dim: int, value_dim: int, stem_width: int = RESNET18_WIDTH) -> None:
        super().__init__()
        self.encoder = MemoryEncoder(feature_dim, value_dim, stem_width)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map -> (B, H*W, C) tokens, the layout memory is stored in."""
    return x.flatten(2).transpose(1, 2)


READOUT_CHUNK_ELEMENTS = 32 * 1024 * 1024  # affinity entries per chunk: bounds the temporary to 128 MB (fp32)


class ReadoutWorkspace:
    """A buffer the read-out's affinity chunks are written into, kept from frame to frame.

    Without it every chunk is a fresh allocation of up to 128 MB, which the CPU allocator takes from
    the OS and the first write page-faults in: at a full ViT-B bank that cost about 0.04 s per frame
    (docs/model.md). Reused, the pages are already mapped. One per memory bank (one video).
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def affinity(self, batch: int, rows: int, positions: int, like: torch.Tensor) -> torch.Tensor:
        """A (batch, rows, positions) tensor of ``like``'s dtype and device, a view of the kept buffer
        (replaced by a larger one, or one of another dtype / device, when it does not fit)."""
        n = batch * rows * positions
        buffer = self._buffer
        if buffer is None or buffer.numel() < n or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffer = like.new_empty(n)
        return buffer[:n].view(batch, rows, positions)


def key_norms(memory_keys: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each memory key, (B, N, Ck) -> (B, N) float32."""
    return memory_keys.float().pow(2).sum(-1)


def read_memory(memory_keys: torch.Tensor, memory_values: torch.Tensor, query_key: torch.Tensor,
                query_value: torch.Tensor, memory_key_norms: torch.Tensor | None = None,
                workspace: ReadoutWorkspace | None = None) -> torch.Tensor:
    """Historical prompt from a memory read-out.

    The affinity of memory position n to query position q is ``(2 k_n.q - |k_n|^2) / sqrt(Ck)``,
    i.e. the negative squared L2 distance up to a per-query constant that cancels in the softmax
    over memory positions. Computed query-major in as few equal chunks of query positions as keep
    a chunk's affinity within ``READOUT_CHUNK_ELEMENTS``, so the softmax runs over contiguous
    memory, in place, and the values are streamed once per chunk. Runs in the dtype of the memory
    (bf16 memory: bf16 matrix products, softmax accumulated in fp32). The result does not depend
    on the order of the memory positions (up to float rounding).

    Args:
        memory_keys: (B, N, Ck) keys of all memory positions (N = frames x H x W).
        memory_values: (B, N, Cv).
        query_key: (B, Ck, H, W) key of the current frame.
        query_value: (B, Cv, H, W) compressed features of the current frame.
        memory_key_norms: (B, N) ``key_norms(memory_keys)`` if already known.
        workspace: where the affinity chunks go when no gradient is needed (the tracker's bank keeps
            one); None: a fresh tensor per chunk.

    Returns:
        (B, 2 Cv, H, W): the affinity-weighted memory values, then ``query_value``; channels-last
        when ``query_value`` is.
    """
    B, N, Ck = memory_keys.shape
    _, Cv, H, W = query_value.shape
    dtype = memory_keys.dtype
    norms = key_norms(memory_keys) if memory_key_norms is None else memory_key_norms
    with torch.autocast(device_type=memory_keys.device.type, enabled=False):
        bias = (-norms / math.sqrt(Ck)).to(dtype).unsqueeze(1)
        queries = to_tokens(query_key).to(dtype)
        keys_t = memory_keys.transpose(1, 2)
        values = memory_values.to(dtype)
        chunks = math.ceil(H * W * N / READOUT_CHUNK_ELEMENTS)
        chunk = math.ceil(H * W / chunks)
        parts = []
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys_t, values, bias))
        for start in range(0, H * W, chunk):
            rows = queries[:, start:start + chunk]
            if grad:
                logits = torch.baddbmm(bias, rows, keys_t, alpha=2 / math.sqrt(Ck)).softmax(dim=-1)
            else:  # in place: one affinity-sized buffer per chunk, the workspace's when there is one
                out = None if workspace is None else workspace.affinity(B, rows.shape[1], N, queries)
                logits = torch.baddbmm(bias, rows, keys_t, alpha=2 / math.sqrt(Ck), out=out)
                torch.softmax(logits, dim=-1, out=logits)
            parts.append(torch.bmm(logits, values))
        readout = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)).transpose(1, 2).reshape(B, Cv, H, W)
    return torch.cat([readout.to(query_value.dtype), query_value], dim=1)


class MemoryBank:
    """FIFO of per-frame memory keys, values and key norms, capped at ``capacity`` frames.

    Entries live in preallocated buffers in the layout the read-out multiplies, keys (B, S*HW, Ck),
    values (B, S*HW, Cv) and norms (B, S*HW) for S frame slots; S doubles as frames arrive, up to
    ``capacity``. Once the bank is full a write overwrites the oldest frame's slot (a ring buffer),
    so neither writing nor reading copies the bank. ``tensors()`` returns the slots in storage
    order, which is the time order rotated once the bank has wrapped; the read-out sums over all
    memory positions and does not depend on their order. ``ordered_tensors()`` gives time order.

    Keeps nothing but the keys and values (the original also kept every written search crop,
    unbounded). A fresh bank per video: the tracker creates one in ``initialize``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1 frame, got {capacity}")
        self.capacity = capacity
        self._buffers: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # keys, values, norms
        self._frame_len = 0  # memory positions per frame (H * W)
        self._count = 0      # frames held
        self._next = 0       # slot the next write goes to
        self.workspace = ReadoutWorkspace()  # the read-out's affinity buffer, reused frame to frame

    def __len__(self) -> int:
        return self._count

    def _slots(self) -> int:
        return 0 if self._buffers is None else self._buffers[2].shape[1] // self._frame_len

    def _grow(self, keys: torch.Tensor, values: torch.Tensor, norms: torch.Tensor) -> None:
        """Reallocate the buffers with twice the slots (at most ``capacity``), keeping the frames held."""
        slots = min(self.capacity, max(1, 2 * self._slots()))
        n, held = slots * self._frame_len, self._count * self._frame_len
        grown = tuple(x.new_empty(x.shape[0], n, *x.shape[2:]) for x in (keys, values, norms))
        if self._buffers is not None:
            for new, old in zip(grown, self._buffers):
                new[:, :held] = old[:, :held]
        self._buffers = grown

    def write(self, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store one frame's key (B, Ck, H, W) and value (B, Cv, H, W); overwrite the oldest when full."""
        entries = (to_tokens(key), to_tokens(value))
        entries += (key_norms(entries[0]),)
        if self._buffers is None:
            self._frame_len = entries[0].shape[1]
        if self._count == self._slots() < self.capacity:
            self._grow(*entries)
        positions = slice(self._next * self._frame_len, (self._next + 1) * self._frame_len)
        for buffer, entry in zip(self._buffers, entries):
            buffer[:, positions] = entry
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys (B, N, Ck), values (B, N, Cv) and key norms (B, N) of all frames held, in storage order
        (views of the buffers, no copy)."""
        if not self._count:
            raise RuntimeError("the memory bank is empty")
        n = self._count * self._frame_len
        return tuple(buffer[:, :n] for buffer in self._buffers)

    def ordered_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tensors()`` with the frames in time order, oldest first (a copy once the bank has wrapped)."""
        tensors = self.tensors()
        if self._count < self.capacity or self._next == 0:
            return tensors
        split = self._next * self._frame_len
        return tuple(torch.cat([x[:, split:], x[:, :split]], dim=1) for x in tensors)
