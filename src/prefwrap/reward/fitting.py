"""Fit the reward ensemble to preferences and rankings: bootstrapped members, adaptive L2, bounded time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prefwrap.reward.dataset import LabelTensors, PreferenceDataset
from prefwrap.reward.loss import ranking_loss


@dataclass(frozen=True)
class FitReport:
    """What one refit did: losses, held-out accuracy, the L2 coefficient reached, and its cost."""

    train_loss: float
    validation_loss: float
    validation_accuracy: float
    l2_coef: float
    gradient_steps: int
    seconds: float


def segment_returns(
    model: nn.Module,
    observations: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    absorbing: torch.Tensor,
) -> torch.Tensor:
    """Per-member predicted returns of segments, absorbing steps included.

    A segment that ends in a termination is padded with absorbing steps, each worth the model's
    learned ``absorbing_reward`` (the absorbing-state treatment of Kostrikov et al. 2019,
    "Discriminator-Actor-Critic", section 4.2): the labels then say what ending an episode is worth.

    Args:
        model: An ensemble mapping ``(E, N, ...)`` or ``(N, ...)`` inputs to ``(E, N)`` rewards, with
            an ``absorbing_reward`` parameter ``(E,)``.
        observations: ``(S, H, *obs)`` shared by all members, or ``(E, S, H, *obs)`` per member.
        actions: ``(S, H, D_a)`` or ``(E, S, H, D_a)``.
        mask: ``(S, H)`` or ``(E, S, H)``; 1 for valid steps, 0 for padding.
        absorbing: ``(S,)`` or ``(E, S)`` float count of absorbing steps per segment.

    Returns:
        ``(E, S)`` sums of the predicted reward over each segment's valid and absorbing steps.
    """
    lead = mask.shape  # (S, H) shared, or (E, S, H) per member
    obs = observations.reshape(*lead[:-2], -1, *observations.shape[mask.dim() :])
    act = actions.reshape(*lead[:-2], lead[-2] * lead[-1], actions.shape[-1])  # explicit: D_a may be 0
    rewards = model(obs, act)  # (E, S * H)
    rewards = rewards.reshape(rewards.shape[0], *lead[-2:])
    return (rewards * mask).sum(dim=-1) + absorbing * model.absorbing_reward[:, None]


class RewardFitter:
    """Fits a reward ensemble with the Bradley-Terry / Plackett-Luce loss, warm-started across calls.

    Pairs use the Bradley-Terry loss, rankings of ``K`` segments the Plackett-Luce loss, both with
    the same noise model (:mod:`prefwrap.reward.loss`); each label's loss is scaled by its weight.

    Each member trains on its own online bootstrap of the labels (see
    :class:`~prefwrap.reward.dataset.PreferenceDataset`) and is validated on the pairs it left out.
    After every epoch the L2 coefficient is adapted so the validation loss stays 1.1-1.5x the training
    loss (the paper's regulariser). Each call to :meth:`fit` stops after ``epochs`` passes or ``max_seconds``.

    Args:
        model: The ensemble (``MlpRewardEnsemble`` or a CNN ensemble with the same call signature).
        learning_rate: Adam step size.
        batch_size: Labels (pairs or rankings) per member per gradient step; a member with fewer
            in-bag labels than this takes batches of that many (one step per epoch).
        epochs: Passes over the (bootstrapped) training labels per refit.
        max_seconds: Wall-clock bound per refit; ``None`` for no bound.
        epoch_labels: Labels per epoch at most: with more, an epoch samples this many (with
            replacement, from each member's bootstrap) and the losses that adapt the L2 coefficient
            and the reported accuracy are measured on a random sample of this many, so a refit's cost
            stops growing with the label count (warm starts keep what earlier fits learned).
            ``None``: every epoch passes over all labels.
        noise: Assumed fraction of random answers in the Bradley-Terry / Plackett-Luce model.
        l2_coef: Initial L2 coefficient (adapted when ``adapt_l2``).
        adapt_l2: Keep validation/training loss in ``[1.1, 1.5]`` by scaling the L2 coefficient.
        seed: Seed of the bootstrap and batch sampling.
    """

    L2_RATIO_RANGE = (1.1, 1.5)
    L2_STEP = 1.25  # multiplicative change per epoch: gentle, so noisy small validation sets don't swing it
    L2_BOUNDS = (1e-6, 1.0)

    def __init__(
        self,
        model: nn.Module,
        *,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 5,
        max_seconds: float | None = 30.0,
        epoch_labels: int | None = 2048,
        noise: float = 0.1,
        l2_coef: float = 1e-4,
        adapt_l2: bool = True,
        seed: int | None = None,
    ) -> None:
        if batch_size < 1 or epochs < 1:
            raise ValueError(f"batch_size and epochs must be >= 1, got {batch_size} and {epochs}")
        if epoch_labels is not None and epoch_labels < 1:
            raise ValueError(f"epoch_labels must be >= 1 or None, got {epoch_labels}")
        self.model = model
        self.batch_size = batch_size
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.epoch_labels = epoch_labels
        self.noise = noise
        self.l2_coef = l2_coef
        self.adapt_l2 = adapt_l2
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        self._rng = np.random.default_rng(seed)
        self._weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        self.progress: Callable[[int, int, int, float], None] | None = None
        """Called after each epoch with ``(epoch, epochs, gradient_steps, seconds)`` (the CLI prints
        long fits' progress); from the fitting thread when the fit runs in the background."""

    def fit(self, dataset: PreferenceDataset, epochs: int | None = None) -> FitReport:
        """Refit on all labels in ``dataset``; returns losses and accuracy after the refit.

        Raises:
            ValueError: ``dataset`` holds no labels.
        """
        if len(dataset) == 0:
            raise ValueError("no labels yet: answer at least one non-skipped query before fitting")
        return self.fit_tensors(dataset.segment_tensors(), dataset.labels(), epochs)

    @torch.enable_grad()  # callers may run under no_grad (sb3-contrib's ARS evaluates candidates so)
    def fit_tensors(
        self, segments: dict[str, torch.Tensor], labels: LabelTensors, epochs: int | None = None
    ) -> FitReport:
        """Refit on a snapshot of a dataset (:meth:`PreferenceDataset.segment_tensors` and
        :meth:`~PreferenceDataset.labels`), which a background thread can use while the dataset grows.

        The time bound is checked after every gradient step, so a refit ends within ``max_seconds``
        plus one step and one evaluation, also for CNN ensembles and the first, longer fit.
        """
        start = time.perf_counter()
        counts, n_labels = labels.counts, len(labels.sizes)
        self._set_input_statistics(segments)
        in_bag = [np.repeat(np.arange(n_labels), counts[:, m].numpy()) for m in range(counts.shape[1])]
        in_bag = [index if len(index) else np.arange(n_labels) for index in in_bag]
        epoch_size = max(len(index) for index in in_bag)
        if self.epoch_labels is not None:
            epoch_size = min(epoch_size, self.epoch_labels)
        # fewer labels than a batch: a batch of them all (drawn with replacement, as always) costs
        # batch_size / epoch_size times less than repeating them to fill batch_size; the expected
        # gradient is the same. It matters for CNN rewards, whose first fits have few labels.
        batch_size = min(self.batch_size, epoch_size)
        steps_per_epoch = max(1, int(np.ceil(epoch_size / batch_size)))
        steps, n_epochs, out_of_time = 0, epochs or self.epochs, False
        self.model.train()
        for epoch in range(n_epochs):
            batches = torch.as_tensor(
                np.stack(
                    [
                        index[self._rng.integers(0, len(index), (steps_per_epoch, batch_size))]
                        for index in in_bag
                    ],
                    axis=1,
                )
            )  # (steps, E, B)
            for batch in batches:
                loss = self._batch_loss(segments, labels, batch)
                self.optimizer.zero_grad(set_to_none=True)
                (loss + self.l2_coef * sum((w**2).sum() for w in self._weights)).backward()
                self.optimizer.step()
                steps += 1
                out_of_time = self.max_seconds is not None and time.perf_counter() - start > self.max_seconds
                if out_of_time:
                    break
            sample = self._evaluation_sample(n_labels)
            train_loss, validation_loss, validation_accuracy = self._evaluate(segments, labels, sample)
            if self.adapt_l2 and np.isfinite(validation_loss):
                self._adapt_l2(validation_loss / max(train_loss, 1e-8))
            if self.progress is not None:
                self.progress(epoch + 1, n_epochs, steps, time.perf_counter() - start)
            if out_of_time:
                break
        return FitReport(
            train_loss, validation_loss, validation_accuracy, self.l2_coef, steps, time.perf_counter() - start
        )

    def _set_input_statistics(self, segments: dict[str, torch.Tensor]) -> None:
        """Standardise inputs with the statistics of every labelled step (models that support it)."""
        if hasattr(self.model, "fit_input_statistics"):
            valid = segments["mask"].reshape(-1) > 0
            observations = segments["observations"].flatten(0, 1)[valid]
            self.model.fit_input_statistics(observations, segments["actions"].flatten(0, 1)[valid])

    def _batch_loss(
        self, segments: dict[str, torch.Tensor], labels: LabelTensors, batch: torch.Tensor
    ) -> torch.Tensor:
        """Mean weighted loss over ``batch`` (``(E, B)`` label indices, one row per member).

        Each query size present is evaluated on the whole batch and kept where the label has that
        size: with pairs only this is exactly the Bradley-Terry batch loss.
        """
        sizes = labels.sizes[batch]
        losses: torch.Tensor | None = None
        for k, group in labels.groups.items():
            here = sizes == k
            local = torch.where(here, labels.index[batch], 0)
            rows = group.rows[local].flatten(1)  # (E, B * K)
            returns = segment_returns(
                self.model,
                segments["observations"][rows],
                segments["actions"][rows],
                segments["mask"][rows],
                segments["absorbing"][rows],
            ).reshape(*batch.shape, k)
            loss = ranking_loss(returns, group.targets[local], self.noise)  # (E, B)
            if bool(here.all()):
                losses = loss
            else:
                losses = torch.where(here, loss, torch.zeros_like(loss) if losses is None else losses)
        return (losses * labels.weights[batch]).mean()

    def evaluate(self, dataset: PreferenceDataset) -> tuple[float, float, float]:
        """``(train_loss, validation_loss, validation_accuracy)`` of the current ensemble.

        Each member is scored on its own bootstrap: training loss over its in-bag labels (weighted by
        their counts and loss weights), validation loss over its held-out labels (weighted by their
        loss weights) and accuracy over the strictly ordered pairs within its held-out labels (a pair
        label is one such pair unless equal; a ranking of ``K`` segments holds up to ``K(K-1)/2``).
        A member with no held-out label adds nothing; no held-out label at all gives nan.
        """
        return self._evaluate(dataset.segment_tensors(), dataset.labels())

    @torch.no_grad()
    def _evaluate(
        self, segments: dict[str, torch.Tensor], labels: LabelTensors, sample: torch.Tensor | None = None
    ) -> tuple[float, float, float]:
        """:meth:`evaluate` on the labels where ``sample`` ``(L,)`` is True (``None``: all), scoring
        only the segments those labels use."""
        n_segments = len(segments["mask"])
        scored = None if sample is None else self._rows_of(labels, sample)
        self.model.eval()
        inputs = [segments[key] for key in ("observations", "actions", "mask", "absorbing")]
        if scored is None:
            returns = segment_returns(self.model, *inputs)  # (E, S)
        else:
            returns = torch.zeros(self.model.absorbing_reward.shape[0], n_segments)
            returns[:, scored] = segment_returns(self.model, *(tensor[scored] for tensor in inputs))
        self.model.train()
        chosen = torch.ones(len(labels.sizes), dtype=torch.bool) if sample is None else sample
        losses = torch.zeros(returns.shape[0], len(labels.sizes))  # (E, L)
        correct = []
        for k, group in labels.groups.items():
            at = torch.nonzero(labels.sizes == k).squeeze(1)
            query_returns = returns[:, group.rows]  # (E, L_K, K)
            losses[:, at] = ranking_loss(query_returns, group.targets, self.noise)
            first, second = torch.triu_indices(k, k, offset=1)
            rank_gap = group.ranks[:, first] - group.ranks[:, second]  # (L_K, pairs): < 0: first better
            agrees = (query_returns[..., first] > query_returns[..., second]) == (rank_gap < 0)
            held = ((labels.counts[at].T == 0) & chosen[at])[..., None] & (rank_gap != 0)  # (E, L_K, pairs)
            correct.append(agrees[held])
        weights = labels.counts.T.float() * labels.weights * chosen  # (E, L)
        held_out = (labels.counts.T == 0) & chosen
        train_loss = ((losses * weights).sum() / weights.sum().clamp_min(1)).item()
        if not held_out.any():
            return train_loss, float("nan"), float("nan")
        held_weights = labels.weights.expand_as(losses)[held_out]
        validation_loss = ((losses[held_out] * held_weights).sum() / held_weights.sum()).item()
        agreed = torch.cat(correct)
        accuracy = agreed.float().mean().item() if len(agreed) else float("nan")
        return train_loss, validation_loss, accuracy

    @staticmethod
    def _rows_of(labels: LabelTensors, sample: torch.Tensor) -> torch.Tensor:
        """The segment rows ``(R,)`` that the sampled labels compare."""
        rows = [
            group.rows[labels.index[sample & (labels.sizes == k)]].reshape(-1)
            for k, group in labels.groups.items()
        ]
        return torch.unique(torch.cat(rows))

    def _evaluation_sample(self, n_labels: int) -> torch.Tensor | None:
        """Up to :attr:`epoch_labels` labels to evaluate on (``None``: all of them, when fewer)."""
        if self.epoch_labels is None or n_labels <= self.epoch_labels:
            return None
        sample = torch.zeros(n_labels, dtype=torch.bool)
        sample[torch.as_tensor(self._rng.choice(n_labels, self.epoch_labels, replace=False))] = True
        return sample

    def state_dict(self) -> dict[str, Any]:
        """The fitting state a resumed run needs to go on as if never stopped: the weights being
        fitted (ahead of the installed reward while a background fit waits to be installed), the
        adaptive L2 coefficient, Adam's moments and the batch-sampling generator (plain types and
        tensors, so ``torch.load(..., weights_only=True)`` reads it back)."""
        return {
            "model": self.model.state_dict(),
            "l2_coef": self.l2_coef,
            "optimizer": self.optimizer.state_dict(),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (states saved without ``"model"`` keep the weights
        the fitter was built with: the installed reward's).

        Raises:
            KeyError: ``state`` lacks a key :meth:`state_dict` writes.
        """
        if "model" in state:
            self.model.load_state_dict(state["model"])
        self.l2_coef = float(state["l2_coef"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._rng.bit_generator.state = state["rng"]

    def _adapt_l2(self, ratio: float) -> None:
        low, high = self.L2_RATIO_RANGE
        if ratio > high:
            self.l2_coef = min(self.l2_coef * self.L2_STEP, self.L2_BOUNDS[1])
        elif ratio < low:
            self.l2_coef = max(self.l2_coef / self.L2_STEP, self.L2_BOUNDS[0])
