"""A hand-written training loop, no SB3: REINFORCE on CartPole-v1 with a reward learned from preferences.

``PreferenceRewardWrapper`` around a plain ``gymnasium.Env`` is a ``gymnasium.Wrapper``: ``step()``
returns the learned reward r̂(o, a) (the true one stays in ``info["true_reward"]``) and records
segments as your loop steps it. You drive the ``PreferenceLearner``: ``collect_labels()`` asks the
oracle for the labels the schedule wants by now, ``refit()`` refits r̂ when new labels arrived.

    python examples/cleanrl_style_loop.py
    PREFWRAP_STEPS=3000 PREFWRAP_LABELS=10 python examples/cleanrl_style_loop.py   # smoke test
"""

import os
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from prefwrap import PreferenceLearner, PreferenceRewardWrapper, SyntheticOracle

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "CartPole-v1"
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 150_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 150))
LABEL_EVERY = 2_000  # steps between query rounds (SB3's callback does it at rollout ends)
SEED = 0
LEARNING_RATE = 3e-3
GAMMA = 0.99
# -------------------------------------------------------------------------------------------------

torch.manual_seed(SEED)
env = PreferenceRewardWrapper(gym.make(ENV_ID))
learner = PreferenceLearner(env, SyntheticOracle(seed=SEED), TOTAL_LABELS, min_segments=32, seed=SEED)

policy = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))
optimizer = torch.optim.Adam(policy.parameters(), lr=LEARNING_RATE)
true_returns: deque[float] = deque(maxlen=20)

global_step, episode = 0, 0
observation, _ = env.reset(seed=SEED)
while global_step < TOTAL_TIMESTEPS:
    # 1. One episode with the current policy; the wrapper hands back learned rewards.
    log_probs, rewards, done = [], [], False
    while not done:
        distribution = Categorical(logits=policy(torch.as_tensor(observation)))
        action = distribution.sample()
        observation, reward, terminated, truncated, info = env.step(action.item())
        log_probs.append(distribution.log_prob(action))
        rewards.append(float(reward))
        done = terminated or truncated
        global_step += 1
        # 2. The preference loop: ask for what the schedule wants by now, refit if labels arrived.
        if (
            global_step % LABEL_EVERY == 0
            and learner.collect_labels(global_step, TOTAL_TIMESTEPS).new_training_labels
        ):
            report = learner.refit()
            print(f"step {global_step}: {learner.n_labels} labels, val acc {report.validation_accuracy:.2f}")
    true_returns.append(info["pref_episode"]["true_return"])
    observation, _ = env.reset()
    episode += 1

    # 3. REINFORCE on the learned reward: discounted returns-to-go, standardised.
    returns = np.zeros(len(rewards), dtype=np.float32)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + GAMMA * running
        returns[t] = running
    advantages = torch.as_tensor((returns - returns.mean()) / (returns.std() + 1e-8))
    loss = -(torch.stack(log_probs) * advantages).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if episode % 50 == 0:
        print(f"step {global_step}: true return of the last 20 episodes {np.mean(true_returns):.1f}")

print(f"{ENV_ID}: true return {np.mean(true_returns):.1f} (last 20 episodes, 500 is the maximum)")
