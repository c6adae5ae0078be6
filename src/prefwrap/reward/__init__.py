"""The reward model: the learned reward r̂(o, a), its ensemble networks, the preference data and the fit.

- :mod:`~prefwrap.reward.learned`: :class:`LearnedReward`, the ensemble mean normalised for the agent.
- :mod:`~prefwrap.reward.mlp` / :mod:`~prefwrap.reward.cnn`: the ensemble networks for vectors and images.
- :mod:`~prefwrap.reward.dataset`: labelled queries as tensors.
- :mod:`~prefwrap.reward.loss`: the Bradley–Terry preference loss.
- :mod:`~prefwrap.reward.fitting`: fitting the ensemble to the labels.
"""
