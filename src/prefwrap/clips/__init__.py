"""Clips for people: capturing what a segment looked like, turning it into frames, writing video.

- :mod:`~prefwrap.clips.capture`: per-step simulator state, re-rendered only for queried segments.
- :mod:`~prefwrap.clips.camera`: the camera that follows the agent of MuJoCo locomotion envs, and the
  check that every frame shows it (:class:`~prefwrap.clips.camera.FollowAgent` for ``env.render()``).
- :mod:`~prefwrap.clips.frames`: the one rule from a segment to the RGB frames a person sees.
- :mod:`~prefwrap.clips.video`: the one video writer (MP4, or GIF) and the small-render settings.
"""
