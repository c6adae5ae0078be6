"""The reward-model ensemble: ``n_members`` networks evaluated in one batched forward pass.

Each member maps one step ``(observation, action)`` to a scalar reward. Members are stacked along a
leading ensemble axis (weights of shape ``(E, in, out)``), so predicting for all sub-envs and all
members is a handful of batched matrix products rather than a Python loop.
"""

from __future__ import annotations

import functools
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

    def numpy_forward(self) -> NumpyMlpEnsemble:
        """A numpy snapshot of :meth:`forward` (shared inputs ``(N, D_o)``, ``(N, D_a)`` -> ``(E, N)``).

        For the env-step hot path: with a handful of sub-envs, torch's per-operation overhead costs
        more than the arithmetic. Take a new snapshot after the weights change.
        """
        return NumpyMlpEnsemble(self)


class NumpyMlpEnsemble:
    """A frozen numpy copy of an :class:`MlpRewardEnsemble`'s weights and forward pass.

    Each layer is one matmul: its bias is an extra input row of its weights, fed by a constant-1
    feature that every hidden layer carries on in an extra unit (leaky ReLU keeps 1 at 1), so no
    broadcast add per layer; the input standardisation is folded into the first layer.

    Args:
        model: The ensemble to copy (later changes to its weights are not seen).

    Attributes:
        hidden: Per hidden layer, ``(E, in + 1, out + 1)`` float32 weights, bias in the last row.
        output: ``(E, H + 1, 1)`` float32 output weights, bias in the last row.
    """

    def __init__(self, model: MlpRewardEnsemble) -> None:
        weights = [layer.weight.detach().cpu().numpy().astype(np.float64) for layer in model.layers]
        biases = [layer.bias.detach().cpu().numpy().astype(np.float64) for layer in model.layers]
        # ((x - m) / s) @ W + b = x @ (W / s) + (b - (m / s) @ W), per input row of W
        inverse_std = 1.0 / model.input_std.cpu().numpy().astype(np.float64)
        scaled_mean = model.input_mean.cpu().numpy().astype(np.float64) * inverse_std
        biases[0] = biases[0] - (scaled_mean @ weights[0])[:, None, :]
        weights[0] = weights[0] * inverse_std[:, None]
        self.n_members = model.n_members
        self.use_actions = model.use_actions
        self.slope = model.activation.negative_slope
        pairs = list(zip(weights, biases, strict=True))
        self.hidden = [_with_bias_row(w, b, carry_one=True) for w, b in pairs[:-1]]
        self.output = _with_bias_row(*pairs[-1], carry_one=False)  # (E, H + 1, 1)

    def __call__(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Per-member rewards ``(E, N)`` float32 for features ``(N, D_o)``, ``(N, D_a)``."""
        return np.matmul(self.hidden_units(observations, actions), self.output)[..., 0]

    def hidden_units(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The last hidden layer's activations ``(E, N, H + 1)``, the constant-1 unit last."""
        parts = [observations, actions] if self.use_actions else [observations]
        x = np.concatenate([*parts, _ones_column(len(observations))], axis=-1)
        if not self.hidden:  # no hidden layer: every member sees the inputs
            return np.broadcast_to(x, (self.n_members, *x.shape))
        for weight in self.hidden:
            x = np.matmul(x, weight)  # (N, D + 1) @ (E, D + 1, H + 1) broadcasts to (E, N, H + 1)
            np.maximum(x, self.slope * x, out=x)  # in place: x is the fresh product
        return x

    def affine_mean(self, scale: float, shift: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``(mean over members - shift) * scale`` ``(N,)`` float32 for features ``(N, D_o)``, ``(N, D_a)``.

        The mean and the affine map are folded into the output layer: all members' output weights
        become one vector, scaled by ``scale / E``, and the shift joins the bias: one dot product
        replaces the output layer, the mean over members and the normalisation.
        """
        weights = self.output[..., 0].astype(np.float64) * (scale / self.n_members)  # (E, H + 1)
        weights[:, -1] -= shift * scale / self.n_members
        flat = weights.reshape(-1).astype(np.float32)

        def reward(observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
            hidden = self.hidden_units(observations, actions)
            # (E, N, H + 1) -> (N, E * (H + 1)), matching flat (a copy of a few hundred floats)
            return hidden.transpose(1, 0, 2).reshape(len(observations), -1).dot(flat)

        return reward


def _with_bias_row(weight: np.ndarray, bias: np.ndarray, *, carry_one: bool) -> np.ndarray:
    """``(E, in, out)`` weights and ``(E, 1, out)`` bias -> ``(E, in + 1, out [+ 1])`` float32: the bias
    as the last input row; with ``carry_one`` an extra output unit that passes the constant 1 on."""
    n_members, n_in, n_out = weight.shape
    joined = np.zeros((n_members, n_in + 1, n_out + carry_one), np.float32)
    joined[:, :n_in, :n_out] = weight
    joined[:, n_in, :n_out] = bias[:, 0]
    if carry_one:
        joined[:, n_in, n_out] = 1.0
    return joined


@functools.lru_cache(maxsize=64)
def _ones_column(n: int) -> np.ndarray:
    """A read-only ``(n, 1)`` float32 column of ones, built once per batch size."""
    ones = np.ones((n, 1), np.float32)
    ones.flags.writeable = False
    return ones
