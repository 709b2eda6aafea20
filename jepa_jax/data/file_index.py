"""Lists of input files with optional integer labels, from an index file or a folder.

Index files (`.csv`, `.txt`, `.tsv`, or any file that is not itself a video/image): one example
per line, `path [label]`, separated by whitespace or a comma, as the reference's
`<abs video path> <int label>` CSVs. Relative paths are relative to the index file's folder;
blank lines and lines starting with `#` are skipped, and so is a first line `path,label`.

Folders: every file with a matching extension below the folder (sorted, so the order and
labels are the same on every host). With class subfolders (`root/<class>/...`), the label is the
class's position among the sorted subfolder names; files directly in `root` get label -1
(unlabelled), as do all files of a flat folder.

A missing path, an unreadable index or an empty listing is a ConfigError naming the path, raised
when the source is built, before training touches its workdir. Files listed but missing are not
checked here (that would stat millions of files on a network file system); they are skipped at
read time like corrupt ones.
"""

from __future__ import annotations

import dataclasses
import os

from jepa_jax.errors import ConfigError

NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class FileList:
    """Paths and int labels (NO_LABEL when unknown); `classes` names label i when known."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)


def _parse_index(path: str) -> FileList:
    base = os.path.dirname(os.path.abspath(path))
    paths, labels = [], []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the index file {path!r}: {e}") from e
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").replace("\t", " ").split()
        if number == 1 and fields[0].lower() == "path":
            continue  # a header
        label = NO_LABEL
        if len(fields) > 1:
            try:
                label = int(fields[-1])
            except ValueError as e:
                raise ConfigError(
                    f"{path}:{number}: expected 'path [integer label]', got {raw!r}"
                ) from e
            fields = fields[:-1]
        if len(fields) != 1:
            raise ConfigError(
                f"{path}:{number}: expected 'path [integer label]' (paths with spaces are not "
                f"supported), got {raw!r}"
            )
        paths.append(os.path.join(base, fields[0]))
        labels.append(label)
    return FileList(tuple(paths), tuple(labels))


def _scan_folder(root: str, extensions: tuple[str, ...]) -> FileList:
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    class_of = {name: i for i, name in enumerate(subdirs)}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        top = rel.split(os.sep)[0] if rel != "." else None
        for name in sorted(filenames):
            if name.lower().endswith(extensions) and not name.startswith("."):
                label = class_of[top] if top is not None else NO_LABEL
                found.append((os.path.join(dirpath, name), label))
    found.sort()
    return FileList(
        tuple(p for p, _ in found), tuple(lbl for _, lbl in found), classes=tuple(subdirs)
    )


def list_files(path: str, extensions: tuple[str, ...], what: str, key: str) -> FileList:
    """The files of an index file or folder `path` (module docstring).

    Args:
      path: index file or folder.
      extensions: lower-case file name endings to take from folders (".mp4", ...).
      what: the kind of file, for messages ("video", "image").
      key: the config key that gave `path`, for messages ("data.path").
    """
    if not path:
        raise ConfigError(f"config.{key} is empty: expected a {what} folder or an index file")
    if not os.path.exists(path):
        raise ConfigError(
            f"config.{key}={path!r} does not exist: expected a {what} folder or an index file"
        )
    if os.path.isdir(path):
        files = _scan_folder(path, extensions)
        where = f"no {what} files ({', '.join(extensions)}) under the folder"
    else:
        files = _parse_index(path)
        where = "no entries in the index file"
    if not len(files):
        raise ConfigError(f"config.{key}={path!r}: {where}")
    return files
