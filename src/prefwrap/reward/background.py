"""Refit the reward ensemble in a background thread while the policy keeps collecting experience.

The fit trains the fitter's own copy of the ensemble on a snapshot of the labels, so the reward the
agent is given, query selection and diagnostics keep using the installed weights until the learner
swaps the new ones in. PyTorch releases the GIL inside its kernels, so on a machine with a spare core
the fit costs the training loop little wall-clock time.
"""

from __future__ import annotations

import threading

import torch

from prefwrap.reward.dataset import LabelTensors
from prefwrap.reward.fitting import FitReport, RewardFitter

__all__ = ["BackgroundFit"]


class BackgroundFit:
    """One refit running in a daemon thread: started at construction, collected with :meth:`result`.

    Args:
        fitter: The fitter whose model (a copy of the installed ensemble) the thread trains.
        segments: The dataset's segment tensors when the fit started (not modified).
        labels: The dataset's label tensors when the fit started.
        epochs: Passes over the labels (``None``: the fitter's default).
        started_at: Env timestep at which the fit started (when it is due, see the learner).
    """

    def __init__(
        self,
        fitter: RewardFitter,
        segments: dict[str, torch.Tensor],
        labels: LabelTensors,
        epochs: int | None,
        started_at: int,
    ) -> None:
        self.started_at = started_at
        self._report: FitReport | None = None
        self._error: BaseException | None = None
        # Half the intra-op threads (OpenMP's count is per thread): the training loop keeps the rest,
        # so on two cores the fit takes the core that env stepping leaves idle.
        n_threads = max(1, torch.get_num_threads() // 2)

        def run() -> None:
            torch.set_num_threads(n_threads)
            try:
                self._report = fitter.fit_tensors(segments, labels, epochs)
            except BaseException as error:  # re-raised in the training thread by result()
                self._error = error

        self._thread: threading.Thread | None = threading.Thread(
            target=run, name="prefwrap-refit", daemon=True
        )
        self._thread.start()

    @classmethod
    def finished(cls, report: FitReport, started_at: int) -> BackgroundFit:
        """A fit that already ran (restored from a checkpoint): :meth:`result` returns ``report``."""
        fit = cls.__new__(cls)
        fit.started_at, fit._report, fit._error = started_at, report, None
        fit._thread = None
        return fit

    @property
    def done(self) -> bool:
        """The fit has finished (or failed)."""
        return self._thread is None or not self._thread.is_alive()

    def result(self) -> FitReport:
        """Wait for the fit to finish and return its report.

        Raises:
            BaseException: Whatever the fit raised, re-raised here in the caller's thread.
        """
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._report is not None  # the thread either set a report or an error
        return self._report
