"""Pictures of planning episodes: an animated GIF or a PNG strip (Pillow).

Each frame is the top-down view: walls grey, the agent white, the goal a green blob, the path
so far in blue. Frames are rendered with the environment's own renderer, upscaled for viewing.
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np

from jepa_jax.envs import two_rooms
from jepa_jax.envs.two_rooms import TwoRooms

FORMATS = (".gif", ".png")


def episode_frames(
    env: TwoRooms, task: dict, path: np.ndarray, steps: int, every: int = 1, scale: int = 4
) -> list[np.ndarray]:
    """RGB uint8 frames [size*scale, size*scale, 3] of positions path[0..steps] (every `every`
    steps, the last one always included)."""
    layout = jax.tree.map(np.asarray, task["layout"])
    walls = np.asarray(two_rooms.wall_image(env, layout))
    goal = np.asarray(two_rooms.agent_image(env, np.asarray(task["goal"])))
    indices = sorted(set(range(0, steps + 1, max(every, 1))) | {steps})
    frames = []
    trail = np.zeros_like(walls)
    for i in range(steps + 1):
        p = np.round(np.asarray(path[i])).astype(int)
        trail[np.clip(p[1], 0, env.size - 1), np.clip(p[0], 0, env.size - 1)] = 1.0
        if i not in indices:
            continue
        agent = np.asarray(two_rooms.agent_image(env, np.asarray(path[i])))
        rgb = np.stack([0.5 * walls, 0.5 * walls, 0.5 * walls], axis=-1)
        rgb[..., 1] += 0.8 * goal
        rgb[..., 2] += 0.8 * trail
        rgb += agent[..., None]
        img = (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
        frames.append(np.kron(img, np.ones((scale, scale, 1), np.uint8)))
    return frames


def save_episode(
    filename: str,
    env: TwoRooms,
    task: dict,
    path: np.ndarray,
    steps: int,
    max_frames: int = 12,
) -> str:
    """Write an episode as an animated GIF (every step) or a PNG strip (at most `max_frames`
    evenly spaced frames), chosen by the file extension. Written atomically; returns the path."""
    from PIL import Image

    ext = os.path.splitext(filename)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"unsupported image format {ext!r}; expected one of {FORMATS}")
    if ext == ".gif":
        frames = episode_frames(env, task, path, steps)
    else:
        every = max(1, -(-steps // max(max_frames - 1, 1)))
        frames = episode_frames(env, task, path, steps, every=every)
    directory = os.path.dirname(os.path.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=ext, dir=directory)
    os.close(fd)
    try:
        if ext == ".gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=80, loop=0)
        else:
            gap = np.full((frames[0].shape[0], 4, 3), 255, np.uint8)
            strip = np.concatenate([x for f in frames for x in (f, gap)][:-1], axis=1)
            Image.fromarray(strip).save(tmp)
        os.replace(tmp, filename)
    except BaseException:
        os.unlink(tmp)
        raise
    return filename
