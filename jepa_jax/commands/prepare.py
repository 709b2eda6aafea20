"""`jepa-jax prepare --config=configs/<file>.py[:arg] --output=DIR [flags]`

Decodes the videos of the config's data block (`data.path`: a folder or index file; the clip
settings num_frames, frame_step, fps, clips_per_video) once into ArrayRecord shards in DIR, for
the `clip_shards` source (`--config.data.name=clip_shards --config.data.path=DIR`, or
`configs/vjepa_video_folder.py:shards=DIR`). Frames are stored with the short side downscaled to
--short_side, as JPEGs by default; training then only decodes JPEGs, crops and masks.
"""

from __future__ import annotations

import os

from absl import flags

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command

define_config_flag(
    "Training config whose data block names the videos (data.path) and the clip settings; "
    "override fields with --config.<key>=<value>."
)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the shards and clips.json.")
_SPLIT = flags.DEFINE_enum(
    "split", "train", ["train", "test"], "Which files: data.path (train) or data.test_path (test)."
)
_SHORT_SIDE = flags.DEFINE_integer(
    "short_side", 256, "Downscale frames so their short side is at most this many pixels."
)
_ENCODING = flags.DEFINE_enum(
    "encoding", "jpeg", ["jpeg", "raw"], "Frame storage: per-frame JPEG, or raw uint8 (large)."
)
_QUALITY = flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality (1-95).")
_PER_SHARD = flags.DEFINE_integer("clips_per_shard", 1024, "Clips per shard file.")
_WORKERS = flags.DEFINE_integer(
    "num_workers", min(8, os.cpu_count() or 1), "Decoding processes (0: in this process)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace clips already prepared in --output.")
flags.mark_flags_as_required(["config", "output"])


def main(argv: list[str]) -> None:
    start_command(argv)
    from jepa_jax.data import file_index, file_sources, video
    from jepa_jax.data.prepare_clips import prepare_clips

    d = loaded_config().data
    path, key = file_sources.split_path(d, _SPLIT.value)
    files = file_index.list_files(path, video.VIDEO_EXTENSIONS, "video", key)
    clip = file_sources.clip_spec(d)
    print(
        f"prepare: {len(files)} videos from {path} -> {_OUTPUT.value}: {d.clips_per_video} clip(s) "
        f"of {clip.num_frames} frames per video, short side <= {_SHORT_SIDE.value}, "
        f"{_ENCODING.value}",
        flush=True,
    )
    meta = prepare_clips(
        files,
        clip,
        _OUTPUT.value,
        clips_per_video=int(d.clips_per_video),
        short_side=_SHORT_SIDE.value,
        encoding=_ENCODING.value,
        jpeg_quality=_QUALITY.value,
        clips_per_shard=_PER_SHARD.value,
        num_workers=_WORKERS.value,
        overwrite=_OVERWRITE.value,
        source=os.path.abspath(path),
        log=lambda line: print(line, flush=True),
    )
    print(
        f"prepare: wrote {meta['num_clips']} clips in {len(meta['shards'])} shard(s) to "
        f"{_OUTPUT.value}; {len(meta['failed'])} videos skipped"
    )
