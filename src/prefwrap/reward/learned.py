"""The learned reward r̂(o, a): ensemble mean, shifted and scaled to a fixed standard deviation.

Statistics are refreshed explicitly (:meth:`LearnedReward.refresh`, after each refit, from recent
steps) and applied on every prediction, so the reward scale is constant between refits. The shift
makes the mean reward of recent steps 0; once labels have shown what terminating is worth, it instead
makes the absorbing state's reward 0, the value SB3's algorithms give every state after a termination,
so that ending an episode means to the agent what it meant to the labeler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import nn

from prefwrap.encoding import InputEncoder, SpaceBatch
from prefwrap.reward.mlp import MlpRewardEnsemble, NumpyMlpEnsemble

_FORMAT_VERSION = 2
IMAGE_REWARD_STD = 0.05  # the paper normalises Atari rewards to this standard deviation
FAST_PATH_MAX_BATCH = 256  # above this, torch's batched kernels beat the numpy snapshot
PREDICTION_CHUNK_STEPS = 8192
"""Steps per forward pass when predicting many steps without gradients (normalisation refresh, replay
buffer relabelling, scoring candidate segments): bounds the memory of rebuilt image stacks to a few
hundred MB. The CNN splits further into its own ``INFERENCE_CHUNK`` images."""


def step_chunks(n_steps: int, chunk_steps: int = PREDICTION_CHUNK_STEPS) -> list[slice]:
    """Consecutive slices covering ``range(n_steps)``, each at most ``chunk_steps`` long."""
    return [slice(start, start + chunk_steps) for start in range(0, n_steps, max(1, chunk_steps))]


class LearnedReward:
    """Predicts normalised learned rewards for batches of raw (observation, action) pairs.

    Args:
        observation_space: Observation space of the wrapped env.
        action_space: Action space of the wrapped env.
        n_members: Ensemble size (the paper uses 3).
        hidden_sizes: MLP widths (vector observations).
        use_actions: Reward on (o, a) if True, on o alone otherwise.
        reward_std: Standard deviation of the normalised reward; ``None``: 1.0 for vector observations,
            0.05 for images (the paper's Atari setting).
        device: Torch device for inference and fitting.
        uncertainty_penalty: ``β`` of a pessimistic reward ``mean - β · std`` over the members (the
            lower confidence bound of pessimistic reward learning, e.g. Zhu et al. 2023, "Principled
            RLHF", and the sign-flipped RUNE bonus of Liang et al. 2022): the agent is paid less where
            the ensemble is unsure, i.e. off the labelled distribution. 0 (default): the mean.
        seed: Seed of the ensemble's initial weights (a private generator: torch's global random
            state is neither used nor advanced). ``None`` draws them from torch's global generator.

    Attributes:
        offset: The raw reward that maps to 0.
        anchored: True once the offset is the fitted absorbing reward (labelled segments contained
            terminations); until then the wrappers hand terminations to the agent as time limits.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        n_members: int = 3,
        hidden_sizes: tuple[int, ...] = (64, 64),
        use_actions: bool = True,
        reward_std: float | None = None,
        device: str | torch.device = "cpu",
        uncertainty_penalty: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.encoder = InputEncoder(observation_space, action_space, use_actions)
        if reward_std is None:
            reward_std = IMAGE_REWARD_STD if self.encoder.image_observations else 1.0
        if reward_std <= 0:
            raise ValueError(f"reward_std must be > 0, got {reward_std}")
        if uncertainty_penalty < 0:
            raise ValueError(f"uncertainty_penalty must be >= 0, got {uncertainty_penalty}")
        self.config: dict[str, Any] = {
            "n_members": n_members,
            "hidden_sizes": list(hidden_sizes),
            "use_actions": use_actions,
            "reward_std": reward_std,
            "uncertainty_penalty": uncertainty_penalty,
        }
        self.uncertainty_penalty = uncertainty_penalty
        self.device = torch.device(device)
        if seed is None:
            self.model: nn.Module = self._build_model().to(self.device)
        else:  # torch initialises layers from its global generator: fork it so the caller's is untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = self._build_model().to(self.device)
        self.reward_std = reward_std
        self.statistics = RunningMeanStd(shape=())
        self.offset = 0.0  # raw reward that maps to 0: the recent mean, or the absorbing reward
        self.anchored = False  # the offset is the absorbing reward: labels have priced terminating
        self.fitted = False
        self._fast_forward: NumpyMlpEnsemble | None = None
        self._fast_reward: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
        self._fast_reward_for: tuple[float, float, float] | None = None  # (offset, var, reward_std)

    def _build_model(self) -> nn.Module:
        if self.encoder.image_observations:
            from prefwrap.reward.cnn import CnnRewardEnsemble

            return CnnRewardEnsemble(
                self.encoder.observation_space,
                self.encoder.action_dim,
                n_members=self.config["n_members"],
                use_actions=self.config["use_actions"],
            )
        return MlpRewardEnsemble(
            self.encoder.observation_shape[0],
            self.encoder.action_dim,
            n_members=self.config["n_members"],
            hidden_sizes=tuple(self.config["hidden_sizes"]),
            use_actions=self.config["use_actions"],
        )

    @property
    def n_members(self) -> int:
        return int(self.config["n_members"])

    @torch.no_grad()
    def member_rewards(self, observation_features: np.ndarray, action_features: np.ndarray) -> torch.Tensor:
        """Raw per-member rewards ``(E, N)`` for encoded inputs ``(N, *obs)``, ``(N, D_a)``."""
        self.model.eval()
        obs = torch.as_tensor(observation_features, device=self.device)
        act = torch.as_tensor(action_features, device=self.device)
        return self.model(obs, act)

    def predict_features(self, observation_features: np.ndarray, action_features: np.ndarray) -> np.ndarray:
        """Normalised ensemble-mean reward ``(N,)`` for encoded inputs; zeros before the first fit."""
        if not self.fitted:
            return np.zeros(len(action_features), dtype=np.float32)
        snapshot = self._fast_forward
        if snapshot is not None and len(action_features) <= FAST_PATH_MAX_BATCH:
            if self.uncertainty_penalty == 0.0:  # the hot path: mean and normalisation folded in
                return self._normalised_mean_forward(snapshot)(observation_features, action_features)
            members = snapshot(observation_features, action_features)
        else:
            members = self.member_rewards(observation_features, action_features).cpu().numpy()
        return self.normalize(self.combine(members))

    def combine(self, members: np.ndarray) -> np.ndarray:
        """Per-member rewards ``(E, ...)`` -> the raw reward the agent gets, ``mean - β · std`` ``(...)``."""
        if self.uncertainty_penalty == 0.0:  # the hot path: no std, and sum / E is ~3x faster than mean
            return members.sum(axis=0) / members.shape[0]
        return members.mean(axis=0) - self.uncertainty_penalty * members.std(axis=0)

    def predict(self, observations: SpaceBatch, actions: SpaceBatch) -> np.ndarray:
        """Normalised learned reward ``(N,)`` for raw batches as a vector env returns/receives them."""
        return self.predict_features(self.encoder.observations(observations), self.encoder.actions(actions))

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """Raw ensemble-mean rewards ``(N,)`` -> ``(raw - offset) * reward_std / std`` (float32)."""
        return ((raw - self.offset) * self._scale()).astype(np.float32)

    def _scale(self) -> np.float64:
        # a float64 scalar: normalize() multiplies in float64, as the statistics are
        return self.reward_std / np.sqrt(self.statistics.var + 1e-8)

    def _normalised_mean_forward(
        self, snapshot: NumpyMlpEnsemble
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The numpy snapshot's :meth:`~prefwrap.reward.mlp.NumpyMlpEnsemble.affine_mean` for the
        current statistics, rebuilt (from the same snapshot) when they were changed since."""
        applied = (self.offset, float(self.statistics.var), self.reward_std)
        if self._fast_reward is None or applied != self._fast_reward_for:
            self._fast_reward = snapshot.affine_mean(float(self._scale()), self.offset)
            self._fast_reward_for = applied
        return self._fast_reward

    def refresh(
        self, observation_features: np.ndarray, action_features: np.ndarray, *, anchor_absorbing: bool = False
    ) -> None:
        """Call after the weights changed: marks the reward fitted, snapshots the weights for fast
        per-step inference, and resets the normalisation statistics to the ensemble-mean reward on the
        given steps (``(N, *obs)``, ``(N, D_a)`` features).

        Args:
            observation_features: ``(N, *obs)`` encoded observations of recent steps.
            action_features: ``(N, D_a)`` encoded actions of the same steps.
            anchor_absorbing: Shift so that the absorbing state (after a termination) is worth 0,
                instead of the mean of these steps; use it once labelled segments contain terminations.

        Raises:
            ValueError: No steps were given.
        """
        if len(action_features) == 0:
            raise ValueError("no steps to normalise the learned reward on: record or label segments first")
        self.fitted = True
        self._snapshot()
        raw = []
        for chunk in step_chunks(len(action_features)):
            members = self.member_rewards(observation_features[chunk], action_features[chunk])
            raw.append(self.combine(members.cpu().numpy()))
        values = np.concatenate(raw).astype(np.float64)
        self.statistics = RunningMeanStd(shape=())
        self.statistics.update(values)
        absorbing = float(self.combine(self.model.absorbing_reward.detach().cpu().numpy()))
        self.offset = absorbing if anchor_absorbing else float(self.statistics.mean)
        self.anchored = anchor_absorbing

    def save(self, path: str | os.PathLike) -> None:
        """Save weights, configuration and statistics (a file loadable with ``weights_only=True``)."""
        torch.save(
            {
                "format_version": _FORMAT_VERSION,
                "config": self.config,
                "observation_shape": list(self.encoder.observation_shape),
                "action_dim": self.encoder.action_dim,
                "state_dict": self.model.state_dict(),
                "statistics": {
                    "mean": float(self.statistics.mean),
                    "var": float(self.statistics.var),
                    "count": float(self.statistics.count),
                    "offset": self.offset,
                    "anchored": self.anchored,
                },
                "fitted": self.fitted,
            },
            path,
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: str | torch.device = "cpu",
    ) -> LearnedReward:
        """Load a saved reward for an env with the given spaces (safe: no unpickling)."""
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unknown reward-model format {state.get('format_version')!r}")
        config = state["config"]
        reward = cls(
            observation_space,
            action_space,
            n_members=config["n_members"],
            hidden_sizes=tuple(config["hidden_sizes"]),
            use_actions=config["use_actions"],
            reward_std=config["reward_std"],
            uncertainty_penalty=config["uncertainty_penalty"],
            device=device,
        )
        saved = (tuple(state["observation_shape"]), state["action_dim"])
        current = (reward.encoder.observation_shape, reward.encoder.action_dim)
        if saved != current:
            raise ValueError(
                f"{path} was fitted for observation shape {saved[0]} and action size {saved[1]}, "
                f"but this env has {current[0]} and {current[1]}: wrap an env with the same spaces."
            )
        reward.model.load_state_dict(state["state_dict"])
        reward.statistics.mean = np.float64(state["statistics"]["mean"])
        reward.statistics.var = np.float64(state["statistics"]["var"])
        reward.statistics.count = state["statistics"]["count"]
        reward.offset = float(state["statistics"]["offset"])
        reward.anchored = bool(state["statistics"].get("anchored", False))  # absent in older files
        reward.fitted = bool(state["fitted"])
        reward._snapshot()
        return reward

    def _snapshot(self) -> None:
        numpy_forward = getattr(self.model, "numpy_forward", None)
        self._fast_forward = numpy_forward() if callable(numpy_forward) else None
        self._fast_reward = None  # the folded output layer belongs to the old snapshot
