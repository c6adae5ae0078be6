"""Clips for people: capturing what a segment looked like, turning it into frames, writing video.

- :mod:`~prefwrap.clips.capture`: per-step simulator state, re-rendered only for queried segments.
- :mod:`~prefwrap.clips.video`: the video writer and the small-render settings.
"""
