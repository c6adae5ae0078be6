"""The reward-model ensemble: ``n_members`` networks evaluated in one batched forward pass.

Each member maps one step ``(observation, action)`` to a scalar reward. Members are stacked along a
leading ensemble axis (weights of shape ``(E, in, out)``), so predicting for all sub-envs and all
members is a handful of batched matrix products rather than a Python loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied to inputs of shape ``(E, N, in_features)``."""

    def __init__(self, n_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MlpRewardEnsemble(nn.Module):
    """Ensemble of MLP rewards on flat features (the paper's MuJoCo model: 2 x 64, leaky ReLU).

    Inputs are standardised with statistics set by :meth:`set_input_statistics` (kept in buffers so
    they are saved with the weights).

    Args:
        observation_dim: Length of the observation feature vector.
        action_dim: Length of the action feature vector (ignored when ``use_actions`` is False).
        n_members: Ensemble size.
        hidden_sizes: Hidden layer widths.
        use_actions: Reward on (observation, action) if True, on the observation alone otherwise.

    Attributes:
        absorbing_reward: ``(E,)`` learned reward of the absorbing state an episode enters when it
            terminates (fitted from segments that end in a termination).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        n_members: int = 3,
        hidden_sizes: tuple[int, ...] = (64, 64),
        use_actions: bool = True,
    ) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members = n_members
        # the reward of the absorbing state after a termination, one per member (see segment_returns)
        self.absorbing_reward = nn.Parameter(torch.zeros(n_members))
        self.use_actions = use_actions
        in_features = observation_dim + (action_dim if use_actions else 0)
        sizes = [in_features, *hidden_sizes, 1]
        self.layers = nn.ModuleList(EnsembleLinear(n_members, a, b) for a, b in itertools.pairwise(sizes))
        self.activation = nn.LeakyReLU(0.01)
        self.register_buffer("input_mean", torch.zeros(in_features))
        self.register_buffer("input_std", torch.ones(in_features))

    @torch.no_grad()
    def fit_input_statistics(self, observations: torch.Tensor, actions: torch.Tensor) -> None:
        """Set the input standardisation from the labelled steps ``(N, D_o)``, ``(N, D_a)``."""
        x = torch.cat([observations, actions], dim=-1) if self.use_actions else observations
        self.input_mean.copy_(x.mean(dim=0))
        self.input_std.copy_(
            x.std(dim=0).nan_to_num(1.0).clamp_min(1e-3) if len(x) > 1 else torch.ones_like(x[0])
        )

    def join_inputs(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Concatenate (and standardise) step inputs: ``(..., D_o)``, ``(..., D_a)`` -> ``(..., D)``."""
        x = torch.cat([observations, actions], dim=-1) if self.use_actions else observations
        return (x - self.input_mean) / self.input_std

    def forward(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-member rewards.

        Args:
            observations: ``(N, D_o)`` shared by all members, or ``(E, N, D_o)`` one batch per member.
            actions: ``(N, D_a)`` or ``(E, N, D_a)``, matching ``observations``.

        Returns:
            Rewards of shape ``(E, N)``.
        """
        x = self.join_inputs(observations, actions)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n_members, -1, -1)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x).squeeze(-1)

    def numpy_forward(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A numpy snapshot of :meth:`forward` (shared inputs ``(N, D_o)``, ``(N, D_a)`` -> ``(E, N)``).

        For the env-step hot path: with a handful of sub-envs, torch's per-operation overhead costs
        more than the arithmetic, and three batched numpy matmuls on cached weights are ~10x faster.
        Take a new snapshot after the weights change.
        """
        layers = [
            (layer.weight.detach().cpu().numpy().copy(), layer.bias.detach().cpu().numpy().copy())
            for layer in self.layers
        ]
        # Fold the input standardisation into the first layer: ((x - m) / s) @ W + b = x @ W' + b'
        # with W' = W / s (per input row) and b' = b - (m / s) @ W, two fewer operations per call.
        inverse_std = 1.0 / self.input_std.cpu().numpy()
        scaled_mean = self.input_mean.cpu().numpy() * inverse_std
        weight, bias = layers[0]
        layers[0] = (weight * inverse_std[:, None], bias - (scaled_mean @ weight)[:, None, :])
        slope = self.activation.negative_slope
        use_actions = self.use_actions

        def forward(observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
            x = np.concatenate([observations, actions], axis=-1) if use_actions else observations
            for weight, bias in layers[:-1]:
                x = np.matmul(x, weight)  # (N, D) @ (E, D, H) broadcasts to (E, N, H)
                x += bias  # in place: x is the fresh product, so no temporaries (a µs per step)
                np.maximum(x, slope * x, out=x)
            weight, bias = layers[-1]
            return (np.matmul(x, weight) + bias)[..., 0]

        return forward
