"""Video files with PyAV: frame counts, clip frame indices, and decoding selected frames.

PyAV ships FFmpeg in its wheels (Linux, macOS incl. Apple Silicon, Windows), unlike decord, the
reference's decoder. Anything wrong with a file (missing, not a video, truncated, too short)
raises `BadExample` naming it, so the pipeline can skip it (`data.reading`).

Clip sampling follows the reference: `num_frames` frames `step` apart (the reference's
`frame_step` / `sampling_rate`), from a uniformly random start; with `fps` > 0 the step is the
video's own rate / fps instead (V-JEPA 2). `num_segments` > 1 splits the video into equal
segments and takes the clip from segment `segment` (the reference's `num_clips`).
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import numpy as np

from jepa_jax.data.reading import BadExample

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Which frames make a clip: `num_frames` frames `frame_step` apart, or at `fps` when > 0."""

    num_frames: int
    frame_step: int = 4
    fps: float = 0.0

    def step_for(self, video_fps: float) -> int:
        """Frame step for a video of `video_fps` frames per second."""
        if self.fps > 0:
            return max(1, int(round(video_fps / self.fps)))
        return self.frame_step


def _open(path: str):
    import av  # imported lazily: only video sources need it

    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise BadExample(path, f"cannot open as video ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        container.close()
        raise BadExample(path, "has no video stream")
    return container


def _rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(30)


def clip_indices(
    num_video_frames: int,
    step: int,
    num_frames: int,
    rng: np.random.Generator | None,
    segment: int = 0,
    num_segments: int = 1,
) -> np.ndarray:
    """Frame indices of one clip: int64 [num_frames], `step` apart, inside segment `segment`.

    The start is uniform over the positions where the clip fits in its segment (or the whole
    video when the segment is shorter than the clip); with `rng` None it is the middle one.
    Raises ValueError when the video is shorter than the clip span.
    """
    span = (num_frames - 1) * step + 1
    if num_video_frames < span:
        raise ValueError(
            f"has {num_video_frames} frames, fewer than a clip needs ({num_frames} frames "
            f"{step} apart = {span})"
        )
    seg_lo = num_video_frames * segment // num_segments
    seg_hi = num_video_frames * (segment + 1) // num_segments
    lo = min(seg_lo, num_video_frames - span)
    hi = max(lo, min(seg_hi, num_video_frames) - span)  # last valid start
    start = lo + (hi - lo) // 2 if rng is None else int(rng.integers(lo, hi + 1))
    return start + step * np.arange(num_frames, dtype=np.int64)


def _frame_index(frame, stream, rate: Fraction, origin: int) -> int:
    """The frame's position in the video, from its presentation time."""
    return int(round((frame.pts - origin) * stream.time_base * rate))


def _decode_from(container, stream, seek_to: int | None):
    if seek_to is not None:
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
    return container.decode(stream)


def read_clip(
    path: str,
    spec: ClipSpec,
    rng: np.random.Generator | None,
    segment: int = 0,
    num_segments: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one clip of `path`: (uint8 frames [num_frames, H, W, 3] at the video's resolution,
    their int64 frame indices [num_frames]).

    Seeks to the keyframe before the clip, then decodes forward to its last frame, so the cost
    is about one GOP plus the clip span rather than the whole video. Raises BadExample.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg
        rate = _rate(stream)
        total = _frame_count(container, stream, rate)
        try:
            wanted = clip_indices(
                total, spec.step_for(float(rate)), spec.num_frames, rng, segment, num_segments
            )
        except ValueError as e:
            raise BadExample(path, str(e)) from e
        return _decode_indices(container, stream, rate, wanted, path), wanted
    except BadExample:
        raise
    except Exception as e:  # FFmpeg errors on corrupt packets, bad pts, ...
        raise BadExample(path, f"failed to decode ({type(e).__name__}: {e})") from e
    finally:
        container.close()


def _frame_count(container, stream, rate: Fraction) -> int:
    """Frames in the stream: the container's count, else duration x rate."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * stream.time_base * rate)
    if container.duration:
        return int(Fraction(container.duration, 1_000_000) * rate)
    # No metadata at all: count by decoding (rare; e.g. raw elementary streams).
    count = sum(1 for _ in container.decode(stream))
    container.seek(0)
    return count


def _decode_indices(container, stream, rate: Fraction, wanted: np.ndarray, path: str):
    origin = stream.start_time or 0
    first, last = int(wanted[0]), int(wanted[-1])
    seek_to = None
    if first > 0 and stream.time_base is not None:
        seek_to = origin + int(Fraction(first) / rate / stream.time_base)
    frames: dict[int, np.ndarray] = {}
    need = set(int(i) for i in wanted)
    for attempt in range(2):  # second attempt decodes from the start, when seeking overshot
        position = -1
        for frame in _decode_from(container, stream, seek_to if attempt == 0 else None):
            if frame.pts is None:
                position += 1
            else:
                position = _frame_index(frame, stream, rate, origin)
            if attempt == 0 and seek_to is not None and not frames and position > first:
                break  # landed after the clip start: retry from the beginning
            if position in need and position not in frames:
                frames[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
        if len(frames) == len(need) or attempt == 1 or seek_to is None:
            break
        container.seek(0, stream=stream)
        frames.clear()
    missing = sorted(need - frames.keys())
    if missing:
        raise BadExample(
            path,
            f"decoded {len(need) - len(missing)} of the {len(need)} clip frames (first missing "
            f"frame {missing[0]}; truncated or corrupt?)",
        )
    return np.stack([frames[int(i)] for i in wanted])


def write_video(
    path: str,
    frames: np.ndarray,
    fps: int = 30,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
) -> None:
    """Encode uint8 frames [T, H, W, 3] (H, W even) as a video file (H.264 mp4 by default);
    `options` are the encoder's (e.g. {"crf": "18"} for libx264).

    For tests and benchmarks that need real video files; written to a temporary name first, so
    a failure leaves no half-written file.
    """
    import av

    tmp = f"{path}.tmp{os.path.splitext(path)[1]}"
    with av.open(tmp, "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    os.replace(tmp, path)
