"""Tests for prefwrap.encoding: flat features of every supported space, images kept, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from prefwrap.encoding import (
    InputEncoder,
    add_batch_axis,
    check_supported,
    feature_dim,
    flatten_batch,
    is_image,
)

BOX = spaces.Box(-1.0, 1.0, (2, 3), np.float32)
IMAGE = spaces.Box(0, 255, (8, 8, 3), np.uint8)


@pytest.mark.parametrize(
    ("space", "dim"),
    [
        (BOX, 6),
        (spaces.Discrete(4), 4),
        (spaces.MultiDiscrete([2, 3]), 5),
        (spaces.MultiBinary(3), 3),
        (spaces.Dict({"a": spaces.Discrete(2), "b": BOX}), 8),
        (spaces.Tuple((spaces.MultiBinary(2), spaces.Discrete(3))), 5),
    ],
)
def test_feature_dim_matches_flattened_width(space: spaces.Space, dim: int) -> None:
    assert feature_dim(space) == dim
    batch = [space.sample() for _ in range(3)]
    stacked = (
        {k: np.stack([b[k] for b in batch]) for k in space.spaces}
        if isinstance(space, spaces.Dict)
        else tuple(np.stack([b[i] for b in batch]) for i in range(len(space.spaces)))
        if isinstance(space, spaces.Tuple)
        else np.stack(batch)
    )
    features = flatten_batch(space, stacked)
    assert features.shape == (3, dim)
    assert features.dtype == np.float32


def test_discrete_is_one_hot_with_start_offset() -> None:
    space = spaces.Discrete(3, start=-1)
    features = flatten_batch(space, np.array([-1, 1, 0]))
    np.testing.assert_array_equal(features, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_multidiscrete_concatenates_one_hots() -> None:
    features = flatten_batch(spaces.MultiDiscrete([2, 3]), np.array([[1, 0], [0, 2]]))
    np.testing.assert_array_equal(features, [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]])


def test_dict_and_tuple_concatenate_parts_in_space_order() -> None:
    space = spaces.Dict({"b": spaces.Box(-5, 5, (2,)), "a": spaces.Discrete(2)})  # gymnasium sorts keys
    batch = {"a": np.array([1]), "b": np.array([[3.0, 4.0]])}
    np.testing.assert_array_equal(flatten_batch(space, batch), [[0, 1, 3, 4]])
    tup = spaces.Tuple((spaces.Box(-5, 5, (1,)), spaces.Discrete(2)))
    np.testing.assert_array_equal(flatten_batch(tup, (np.array([[2.0]]), np.array([0]))), [[2, 1, 0]])


def test_add_batch_axis_for_nested_elements() -> None:
    space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,)), "mode": spaces.Tuple((spaces.Discrete(2),))})
    element = {"pos": np.array([0.5, -0.5], np.float32), "mode": (1,)}
    batch = add_batch_axis(space, element)
    assert batch["pos"].shape == (1, 2)
    assert batch["mode"][0].shape == (1,)
    np.testing.assert_array_equal(flatten_batch(space, batch), [[0, 1, 0.5, -0.5]])


def test_encoder_clips_box_actions_to_finite_bounds_only() -> None:
    encoder = InputEncoder(BOX, spaces.Box(-2.0, 2.0, (2,), np.float32))
    np.testing.assert_array_equal(encoder.actions(np.array([[5.0, -0.5]])), [[2.0, -0.5]])
    unbounded = InputEncoder(BOX, spaces.Box(-np.inf, np.inf, (1,), np.float32))
    np.testing.assert_array_equal(unbounded.actions(np.array([[5.0]])), [[5.0]])


def test_encoding_actions_leaves_the_callers_array_alone() -> None:
    encoder = InputEncoder(BOX, spaces.Box(-2.0, 2.0, (2,), np.float32))
    actions = np.array([[5.0, -0.5]], np.float32)  # float32: flattening is a view of this array
    encoder.actions(actions)
    np.testing.assert_array_equal(actions, [[5.0, -0.5]])


def test_encoder_keeps_images_as_uint8_and_refuses_scaled_images() -> None:
    assert is_image(IMAGE)
    assert not is_image(spaces.Box(0.0, 1.0, (8, 8, 3), np.float32))
    encoder = InputEncoder(IMAGE, spaces.Discrete(2))
    assert encoder.image_observations
    assert encoder.observation_shape == (8, 8, 3)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    assert encoder.observations(images).dtype == np.uint8
    with pytest.raises(TypeError, match="uint8"):
        encoder.observations(images.astype(np.float32))


def test_unsupported_observation_space_names_the_fix() -> None:
    with pytest.raises(TypeError, match=r"unsupported observation space Text.*wrapper"):
        check_supported(spaces.Text(5), "observation")


def test_dict_action_space_is_refused_with_a_fix() -> None:
    with pytest.raises(TypeError, match="FlattenAction"):
        InputEncoder(BOX, spaces.Dict({"a": spaces.Discrete(2)}))


def test_image_inside_dict_is_refused() -> None:
    with pytest.raises(TypeError, match="image observations inside a Dict"):
        check_supported(spaces.Dict({"img": IMAGE, "v": BOX}), "observation")
