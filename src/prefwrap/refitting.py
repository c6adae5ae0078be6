"""When the reward ensemble is refitted and how a fit reaches the agent: now, or from a background thread."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from prefwrap.reward.background import BackgroundFit
from prefwrap.reward.dataset import LabelTensors, PreferenceDataset
from prefwrap.reward.fitting import FitReport, RewardFitter
from prefwrap.reward.learned import LearnedReward
from prefwrap.segment_buffer import SegmentBuffer, evenly_spread

__all__ = ["NORMALIZATION_MAX_IMAGE_STEPS", "NORMALIZATION_MAX_STEPS", "RewardRefitting"]

NORMALIZATION_MAX_STEPS = 8192
"""The normalisation after a fit reads at most this many of the newest segments' steps, evenly spread:
a mean and a standard deviation need no more (their sampling error is ~1 % of the std), and scoring
all 60,000 steps of 2,000 segments took ~3 % of a HalfCheetah run's wall clock, on its critical path."""
NORMALIZATION_MAX_IMAGE_STEPS = 2048
"""The bound for image observations, read as the steps of segments evenly spread over the newest
(sampling error ~2 % of the std): on a CPU, rebuilding the frame stacks of 2,000 segments to keep
8,192 steps and scoring those with the CNN took ~4 s per install on Breakout, on the critical path."""


class RewardRefitting:
    """Refits the learned reward on the labels so far and installs the new weights.

    The fitter trains its own copy of the ensemble, so a fit running in a background thread
    (:meth:`start`) leaves the installed reward, which the agent, query selection and diagnostics
    use, untouched until :meth:`finish` (``docs/concepts.md#background-refits``). Installing copies
    the weights and refreshes the reward normalisation on the newest recorded steps (at most
    :data:`NORMALIZATION_MAX_STEPS` of them evenly spread, or the steps of segments evenly spread,
    :data:`NORMALIZATION_MAX_IMAGE_STEPS` at most, for images).

    Args:
        reward: The wrapper's learned reward (the installed weights).
        segments: The wrapper's segment buffer, whose newest steps set the normalisation.
        dataset: The labels to fit on.
        fitter: A fitter on a copy of ``reward.model`` (see :class:`~prefwrap.learner.PreferenceLearner`).
        fit_epochs: Passes per refit.
        initial_fit_epochs: Passes of the first fit (no warm start yet).
        normalization_segments: Newest segments whose steps set the normalisation after a fit.
    """

    def __init__(
        self,
        reward: LearnedReward,
        segments: SegmentBuffer,
        dataset: PreferenceDataset,
        fitter: RewardFitter,
        *,
        fit_epochs: int,
        initial_fit_epochs: int,
        normalization_segments: int,
    ) -> None:
        self.reward = reward
        self.segments = segments
        self.dataset = dataset
        self.fitter = fitter
        self.fit_epochs = fit_epochs
        self.initial_fit_epochs = initial_fit_epochs
        self.normalization_segments = normalization_segments
        self.labels_since_fit = 0
        """Training labels added to the dataset since the last fit started."""
        self.last_fit: FitReport | None = None
        self._background: BackgroundFit | None = None

    @property
    def needed(self) -> bool:
        """Labels arrived that no fit has started on yet."""
        return self.labels_since_fit > 0 and len(self.dataset) > 0

    def refit(self) -> FitReport | None:
        """Fit on all labels now if new ones arrived, and install the result (blocking).

        A background fit still running is waited for and installed first. Returns the report of the
        last fit installed, ``None`` when nothing was fitted.
        """
        report = self.finish()
        if not self.needed:
            return report
        return self._install(self.fitter.fit_tensors(*self._inputs()))

    def start(self, timestep: int) -> bool:
        """Start a fit on all labels so far in a background thread, if new labels arrived and no fit
        runs. Returns whether one started; ``timestep`` is kept as :attr:`started_at`."""
        if self._background is not None or not self.needed:
            return False
        self._background = BackgroundFit(self.fitter, *self._inputs(), started_at=timestep)
        return True

    @property
    def started_at(self) -> int | None:
        """Env timestep at which the background fit started; ``None`` when there is none."""
        return None if self._background is None else self._background.started_at

    def finish(self, wait: bool = True) -> FitReport | None:
        """Install the background fit (waiting for it unless ``wait=False``) and return its report;
        ``None`` when there is none (or, with ``wait=False``, it still runs).

        Raises:
            Exception: What the fit raised (e.g. a diverged loss), re-raised here.
        """
        if self._background is None or not (wait or self._background.done):
            return None
        background, self._background = self._background, None
        return self._install(background.result())

    def _inputs(self) -> tuple[dict[str, torch.Tensor], LabelTensors, int]:
        """A snapshot of the labels to fit on, with the epoch count (more for the first fit)."""
        epochs = self.initial_fit_epochs if not self.reward.fitted else self.fit_epochs
        self.labels_since_fit = 0
        return self.dataset.segment_tensors(), self.dataset.labels(), epochs

    def _install(self, report: FitReport) -> FitReport:
        """Give the agent the fitted weights, then refresh the normalisation on the newest recorded
        steps (or the labelled ones when nothing is recorded yet: a run resumed from its store)."""
        self.reward.model.load_state_dict(self.fitter.model.state_dict())
        self.last_fit = report
        images = self.reward.encoder.image_observations
        max_steps = NORMALIZATION_MAX_IMAGE_STEPS if images else NORMALIZATION_MAX_STEPS
        # an image buffer rebuilds the frame stacks of every segment it reads: read only enough
        # segments, evenly spread; flat features are cheap to read, and all steps spread wider
        spread = -(-max_steps // self.segments.segment_length) if images else None
        steps = self.segments.valid_steps(self.normalization_segments, spread=spread)
        observations, actions = steps if len(steps[1]) else self.dataset.valid_steps()
        if len(actions) > max_steps:
            chosen = evenly_spread(len(actions), max_steps)
            observations, actions = observations[chosen], actions[chosen]
        self.reward.refresh(
            observations,
            actions,
            anchor_absorbing=bool(self.dataset.segment_tensors()["absorbing"].any()),
        )
        return report

    def state_dict(self) -> dict[str, Any]:
        """The fitter's state, the last report and a background fit's, waited for but not installed
        (its weights are the fitter's), so a resumed run installs it when the uninterrupted run would."""
        pending = None
        if self._background is not None:
            report = self._background.result()
            pending = {"started_at": self._background.started_at, "report": dataclasses.asdict(report)}
        return {
            "fitter": self.fitter.state_dict(),
            "last_fit": dataclasses.asdict(self.last_fit) if self.last_fit else None,
            "pending_fit": pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``pending_fit`` may be missing: states saved before it was).

        Raises:
            KeyError: ``state`` lacks ``fitter`` or ``last_fit``.
        """
        self.fitter.load_state_dict(state["fitter"])
        self.last_fit = FitReport(**state["last_fit"]) if state["last_fit"] else None
        pending = state.get("pending_fit")
        if pending is not None:
            self._background = BackgroundFit.finished(FitReport(**pending["report"]), pending["started_at"])
