"""Turn observations and actions of any supported Gymnasium space into reward-model inputs.

Vector-like spaces (Box, Discrete, MultiDiscrete, MultiBinary, and Dict/Tuple of them) become one flat
float32 feature vector per step, with discrete parts one-hot encoded. Image spaces (uint8 Box of
rank 3) are kept as uint8 images for a CNN reward model. All functions work on batches ``(N, ...)``
so one call serves every sub-environment of a vector env.
"""

from __future__ import annotations

import functools
from typing import TypeAlias

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space

SpaceBatch: TypeAlias = np.ndarray | dict[str, "SpaceBatch"] | tuple["SpaceBatch", ...]
"""A batch of elements of a Gymnasium space, ``(N, ...)``: an array, or a dict/tuple of batches."""

_FLAT_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_supported(space: spaces.Space, role: str) -> None:
    """Raise a clear error if ``space`` cannot feed a reward model.

    Args:
        space: The observation or action space.
        role: ``"observation"`` or ``"action"``, used in the message.
    """
    if isinstance(space, spaces.Dict | spaces.Tuple):
        if role == "action":
            raise TypeError(
                f"{type(space).__name__} action spaces are not supported by the reward model: "
                "flatten them with gymnasium.wrappers.FlattenAction (or pass use_actions=False)."
            )
        for sub in space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces:
            if is_image(sub):
                raise TypeError(
                    "image observations inside a Dict/Tuple space are not supported: pass the image "
                    "alone (e.g. gymnasium.wrappers.FilterObservation) or a flat vector observation."
                )
            check_supported(sub, role)
        return
    if not isinstance(space, _FLAT_SPACES):
        raise TypeError(
            f"unsupported {role} space {space!r}: prefwrap needs Box, Discrete, MultiDiscrete, "
            "MultiBinary, or Dict/Tuple of those. Convert it with an observation/action wrapper."
        )


def is_image(space: spaces.Space) -> bool:
    """True for uint8 image spaces (channel-first or channel-last), which get a CNN reward model."""
    return isinstance(space, spaces.Box) and is_image_space(space, check_channels=False)


def feature_dim(space: spaces.Space) -> int:
    """Length of the flat feature vector of one element of ``space`` (not for images)."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Dict):
        return sum(feature_dim(sub) for sub in space.spaces.values())
    if isinstance(space, spaces.Tuple):
        return sum(feature_dim(sub) for sub in space.spaces)
    raise TypeError(f"unsupported space {space!r}")


@functools.lru_cache(maxsize=64)
def _one_hot_rows(n: int) -> np.ndarray:
    """The ``(n, n)`` identity, built once per size (indexing it returns a fresh array)."""
    return np.eye(n, dtype=np.float32)


def flatten_batch(space: spaces.Space, batch: SpaceBatch) -> np.ndarray:
    """Flatten a batch of elements of ``space`` into float32 features of shape ``(N, feature_dim)``.

    Box actions are clipped to finite bounds, as the environment applies them.
    """
    if isinstance(space, spaces.Box):
        array = np.asarray(batch, dtype=np.float32)
        return array.reshape(array.shape[0], -1)
    if isinstance(space, spaces.Discrete):
        index = np.asarray(batch).reshape(-1).astype(np.int64) - int(space.start)
        return _one_hot_rows(int(space.n))[index]
    if isinstance(space, spaces.MultiDiscrete):
        index = np.asarray(batch).reshape(len(batch), -1).astype(np.int64) - space.start.reshape(1, -1)
        parts = [_one_hot_rows(int(n))[index[:, k]] for k, n in enumerate(space.nvec.reshape(-1))]
        return np.concatenate(parts, axis=1)
    if isinstance(space, spaces.MultiBinary):
        array = np.asarray(batch, dtype=np.float32)
        return array.reshape(array.shape[0], -1)
    if isinstance(space, spaces.Dict):
        return np.concatenate([flatten_batch(sub, batch[key]) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, spaces.Tuple):
        return np.concatenate([flatten_batch(sub, batch[k]) for k, sub in enumerate(space.spaces)], axis=1)
    raise TypeError(f"unsupported space {space!r}")


def add_batch_axis(space: spaces.Space, element: object) -> SpaceBatch:
    """Turn one element of ``space`` into a batch of one (for single-env wrappers)."""
    if isinstance(space, spaces.Dict):
        return {key: add_batch_axis(sub, element[key]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(add_batch_axis(sub, element[k]) for k, sub in enumerate(space.spaces))
    return np.asarray(element)[None]


class InputEncoder:
    """Maps raw observation/action batches to reward-model inputs for one pair of spaces.

    Args:
        observation_space: The wrapped env's observation space.
        action_space: The wrapped env's action space.
        use_actions: When False the reward ignores actions: they become zero-width features, so any
            action space (even Dict) is accepted.
    """

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, use_actions: bool = True
    ) -> None:
        self.image_observations = is_image(observation_space)
        if not self.image_observations:
            check_supported(observation_space, "observation")
        if use_actions:
            check_supported(action_space, "action")
        self.observation_space = observation_space
        self.action_space = action_space
        self.use_actions = use_actions
        self.observation_shape: tuple[int, ...] = (
            tuple(observation_space.shape) if self.image_observations else (feature_dim(observation_space),)
        )
        self.action_dim = feature_dim(action_space) if use_actions else 0
        box = isinstance(action_space, spaces.Box)
        self._clip = (
            (action_space.low.reshape(1, -1), action_space.high.reshape(1, -1))
            if box and np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))
            else None
        )

    def observations(self, batch: SpaceBatch) -> np.ndarray:
        """Observation batch -> ``(N, *observation_shape)`` (float32 features or uint8 images)."""
        if self.image_observations:
            images = np.asarray(batch)
            if images.dtype != np.uint8:
                raise TypeError(f"image observations must be uint8, got {images.dtype}: undo any scaling.")
            return images
        return flatten_batch(self.observation_space, batch)

    def actions(self, batch: SpaceBatch) -> np.ndarray:
        """Action batch -> ``(N, action_dim)`` float32 features (Box actions clipped to bounds)."""
        if not self.use_actions:
            first = (
                next(iter(batch.values()))
                if isinstance(batch, dict)
                else batch[0]
                if isinstance(batch, tuple)
                else batch
            )
            return np.zeros((len(first), 0), dtype=np.float32)
        features = flatten_batch(self.action_space, batch)
        if self._clip is not None:
            # not in place: for float32 Box actions ``features`` is a view of the caller's array
            # (np.clip costs ~3x more than the two ufuncs on the per-step batch of a few rows)
            features = np.minimum(np.maximum(features, self._clip[0]), self._clip[1])
        return features
