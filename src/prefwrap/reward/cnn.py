"""The reward-model ensemble for image observations: the paper's Atari CNN, all members in one pass.

Each member is 4 convolutions of 16 filters (7x7, 5x5, 3x3, 3x3; strides 3, 2, 1, 1) with batch
norm, leaky ReLU and dropout, then a 64-unit dense layer and a scalar output (Christiano et al. 2017,
appendix A.2). The members are stacked as the groups of grouped convolutions: member ``m`` owns
channels ``m * 16 : (m + 1) * 16`` of every layer, so one ``conv2d`` call serves the whole ensemble.
On CPU this is 1.2-2x faster than ``torch.func.stack_module_state`` + ``vmap`` (inference and
fitting) and keeps ``nn.Module`` train/eval semantics for batch norm; a plain loop over member modules
was still 1.2-1.4x faster on large CPU batches (oneDNN's grouped kernels): see ``docs/atari.md``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from prefwrap.env_utils import image_channels_first
from prefwrap.reward.mlp import EnsembleLinear

KERNELS = (7, 5, 3, 3)
STRIDES = (3, 2, 1, 1)
INFERENCE_CHUNK = 1024  # images per forward without gradients: bounds memory (~0.3 GB) of big evaluations


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` ``(N, C, H, W)``; on CPU with a mask made of random bytes.

    ``F.dropout`` draws one random double per element, which on CPU took as long as all four
    convolutions; one 64-bit draw per 8 elements is about 5x faster. ``p`` is then rounded to a
    multiple of 1/256 (0.5 exactly). Seeded by torch's global generator, like ``F.dropout``.
    """
    if x.is_cuda or p <= 0.0:
        return F.dropout(x, p, training=True)
    n, c, h, w = x.shape
    words = torch.randint(-(2**63), 2**63 - 1, ((x.numel() + 7) // 8,), dtype=torch.int64)
    # Bytes laid out like a channels-last x, so the multiply walks both tensors in memory order.
    keep = words.view(torch.uint8)[: x.numel()].view(n, h, w, c).permute(0, 3, 1, 2) >= round(p * 256)
    return x.mul(keep).mul_(1.0 / (1.0 - p))


class _EnsembleBatchNorm(nn.Module):
    """Batch norm over ``E * C`` channels: per member and channel, as ``BatchNorm2d`` would be.

    Its affine parameters are named ``scale``/``shift`` so that the fitter's L2 penalty, which takes
    parameters named ``*weight``, acts on the convolution and dense weights only. In eval mode it is
    one fused multiply-add (oneDNN's batch norm is slow on channels-last tensors).
    """

    def __init__(self, n_channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n_channels))
        self.shift = nn.Parameter(torch.zeros(n_channels))
        self.register_buffer("running_mean", torch.zeros(n_channels))
        self.register_buffer("running_var", torch.ones(n_channels))
        self.momentum = momentum
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.scale, self.shift, True, self.momentum, self.eps
            )
        gain = self.scale * torch.rsqrt(self.running_var + self.eps)
        offset = self.shift - self.running_mean * gain
        return torch.addcmul(offset[:, None, None], x, gain[:, None, None])


class CnnRewardEnsemble(nn.Module):
    """Ensemble of CNN rewards on uint8 images (the paper's Atari model), one batched forward.

    Inputs are uint8 images in the observation space's layout (channel-first or channel-last,
    frame-stacked or not), scaled to [0, 1] inside the model. Batch norm and dropout act only in
    training mode (the fitter calls ``model.train()``/``model.eval()``).

    Args:
        observation_space: uint8 ``Box`` of shape ``(C, H, W)`` or ``(H, W, C)``; ``C`` may hold
            stacked frames (``VecFrameStack``). Height and width must be at least 43 pixels.
        action_dim: Length of the action feature vector (ignored when ``use_actions`` is False).
        n_members: Ensemble size.
        use_actions: Concatenate the action features to the dense layer's input.
        n_filters: Filters per convolution and member (the paper: 16).
        hidden_size: Width of the dense layer (the paper: 64).
        dropout: Dropout probability after every convolution (the paper: 0.5).

    Example:
        >>> import numpy as np, torch
        >>> from gymnasium import spaces
        >>> model = CnnRewardEnsemble(spaces.Box(0, 255, (84, 84, 4), np.uint8), action_dim=6)
        >>> images = torch.zeros(8, 84, 84, 4, dtype=torch.uint8)
        >>> model.eval()(images, torch.zeros(8, 6)).shape
        torch.Size([3, 8])
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_dim: int,
        n_members: int = 3,
        use_actions: bool = True,
        *,
        n_filters: int = 16,
        hidden_size: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        if not isinstance(observation_space, spaces.Box) or observation_space.dtype != np.uint8:
            raise TypeError(
                f"CnnRewardEnsemble needs a uint8 image Box space, got {observation_space!r}: keep frames "
                "as uint8 in [0, 255] (remove observation scaling; the model divides by 255 itself)."
            )
        self.channels_first = image_channels_first(observation_space)
        shape = tuple(observation_space.shape)
        in_channels, height, width = shape if self.channels_first else (shape[2], shape[0], shape[1])
        for kernel, stride in zip(KERNELS, STRIDES, strict=True):
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        if min(height, width) < 1:
            raise ValueError(
                f"images of shape {shape} are too small for the paper's 4 convolutions: height and width "
                "must be at least 43 pixels (Atari frames are resized to 84x84, e.g. by WarpFrame)."
            )
        self.n_members = n_members
        # the reward of the absorbing state after a termination, one per member (see segment_returns)
        self.absorbing_reward = nn.Parameter(torch.zeros(n_members))
        self.use_actions = use_actions
        self.observation_shape = shape
        self.n_filters = n_filters
        widths = [in_channels, *[n_filters] * len(KERNELS)]
        self.convs = nn.ModuleList(
            nn.Conv2d(n_members * a, n_members * b, k, s, groups=n_members)
            for a, b, k, s in zip(widths[:-1], widths[1:], KERNELS, STRIDES, strict=True)
        )
        self.norms = nn.ModuleList(_EnsembleBatchNorm(n_members * n_filters) for _ in KERNELS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.activation = nn.LeakyReLU(0.01)
        features = n_filters * height * width + (action_dim if use_actions else 0)
        self.hidden = EnsembleLinear(n_members, features, hidden_size)
        self.output = EnsembleLinear(n_members, hidden_size, 1)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-member rewards.

        Args:
            observations: uint8 images ``(N, *obs_shape)`` shared by all members, or
                ``(E, N, *obs_shape)`` one batch per member.
            actions: ``(N, D_a)`` or ``(E, N, D_a)`` float action features, matching ``observations``.

        Returns:
            Rewards of shape ``(E, N)``.
        """
        if observations.dtype != torch.uint8:
            raise TypeError(
                f"CnnRewardEnsemble takes uint8 images, got {observations.dtype}: pass the raw frames "
                "(0-255); the model scales them by 1/255 itself."
            )
        shared = observations.dim() == len(self.observation_shape) + 1
        if tuple(observations.shape[-3:]) != self.observation_shape or not (
            shared or observations.dim() == len(self.observation_shape) + 2
        ):
            raise ValueError(
                f"expected images (N, *{self.observation_shape}) or (E, N, *{self.observation_shape}), "
                f"got {tuple(observations.shape)}"
            )
        n = observations.shape[0 if shared else 1]
        if torch.is_grad_enabled() or n <= INFERENCE_CHUNK:
            return self._forward(observations, actions, shared)
        parts = [
            self._forward(
                observations[start : start + INFERENCE_CHUNK]
                if shared
                else observations[:, start : start + INFERENCE_CHUNK],
                actions[..., start : start + INFERENCE_CHUNK, :],
                shared,
            )
            for start in range(0, n, INFERENCE_CHUNK)
        ]
        return torch.cat(parts, dim=1)

    def _forward(self, observations: torch.Tensor, actions: torch.Tensor, shared: bool) -> torch.Tensor:
        # Work in channels-last memory (NHWC), the layout oneDNN's CPU convolutions are fastest on:
        # the logical shape stays (N, C, H, W).
        x = observations if not self.channels_first else observations.movedim(-3, -1)  # (..., H, W, C)
        if not shared:  # (E, N, H, W, C) -> (N, H, W, E * C): member m's inputs feed group m
            x = x.permute(1, 2, 3, 0, 4).flatten(3, 4)
        x = x.to(torch.float32, memory_format=torch.contiguous_format).mul_(1.0 / 255.0)
        x = x.permute(0, 3, 1, 2)  # (N, C', H, W) in channels-last memory
        first = self.convs[0]
        # Shared inputs go through the first layer as one ordinary convolution with E * 16 outputs:
        # the same weights as the grouped one, without copying the images E times.
        x = F.conv2d(x, first.weight, first.bias, first.stride, groups=1 if shared else self.n_members)
        for index, norm in enumerate(self.norms):
            if index > 0:
                x = self.convs[index](x)
            x = F.leaky_relu(norm(x), 0.01, inplace=True)
            if self.training and self.dropout > 0:
                x = _dropout(x, self.dropout)
        n = x.shape[0]
        x = x.reshape(n, self.n_members, -1).transpose(0, 1)  # (E, N, 16 * h * w)
        if self.use_actions:
            acts = actions.to(x.dtype)
            acts = acts.unsqueeze(0).expand(self.n_members, -1, -1) if acts.dim() == 2 else acts
            x = torch.cat([x, acts], dim=-1)
        x = self.activation(self.hidden(x))
        return self.output(x).squeeze(-1)
