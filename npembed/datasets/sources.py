"""Where IMDB reviews come from: an aclImdb archive, an extracted aclImdb/ folder, or tfds.

Every reader yields the same thing, ``Review(key, text, label)`` per review, where ``key`` is
the review's path in the aclImdb layout (``aclImdb/train/pos/0_9.txt``), ``text`` its bytes
stripped of surrounding whitespace (as tfds's builder reads it) and ``label`` 0 (neg) or 1 (pos).
Each split is put in tfds's stored order: sorted by the 128-bit integer of
``md5(split_name + key)``, the order of tfds's shuffling writer.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

from npembed.errors import DATA, NpembedError

SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
ENV_VAR = "NPEMBED_DATA"
TFDS_NAME = "tfds"
MAX_REVIEW_BYTES = 1 << 20      # an aclImdb review is at most 14 kB; a bigger file is not one
_MEMBER_RE = re.compile(r"^(?:\./)?(aclImdb/(train|test)/(neg|pos)/[^/]+\.txt)$")


class DataError(NpembedError, ValueError):
    """The data source is missing, unreadable or not in the aclImdb layout."""

    exit_code = DATA


@dataclasses.dataclass(frozen=True)
class Review:
    key: str       # aclImdb/<split>/<neg|pos>/<id>_<rating>.txt
    text: bytes    # stripped, UTF-8
    label: int     # 0 = neg, 1 = pos


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A resolved data argument: ``kind`` is 'archive', 'folder' or 'tfds'."""

    kind: str
    path: Path | None = None

    def describe(self) -> str:
        return "tfds imdb_reviews/subwords8k" if self.kind == TFDS_NAME else f"{self.kind} {self.path}"


def resolve_source(data: str | os.PathLike | None = None) -> DataSource:
    """Turn ``--data`` / ``NPEMBED_DATA`` / nothing into a DataSource, or raise DataError.

    Accepts a ``.tar.gz`` archive in the aclImdb layout (``aclImdb_v1.tar.gz`` or the labeled
    copy), an extracted ``aclImdb/`` folder (or the folder that holds it), or ``tfds``.
    """
    if data is None or str(data) == "":
        data = os.environ.get(ENV_VAR) or None
    if data is None:
        raise DataError(
            "no IMDB data given. Pass one of:\n"
            "  --data /path/to/aclImdb_v1.tar.gz   (the official archive, or aclImdb_labeled.tar.gz)\n"
            "  --data /path/to/aclImdb             (an extracted folder)\n"
            "  --data tfds                         (imdb_reviews/subwords8k prepared by tfds; needs\n"
            "                                       pip install 'npembed[tensorflow]' and internet)\n"
            f"or set {ENV_VAR} to one of these. The official archive is at "
            "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz")
    if str(data) == TFDS_NAME:
        return DataSource(TFDS_NAME)
    from npembed.cachedir import expand_path
    path = expand_path(data, "data path")
    if not path.exists():
        raise DataError(f"data path {path} does not exist; pass an aclImdb .tar.gz archive, an "
                        "extracted aclImdb/ folder, or 'tfds'")
    if path.is_dir():
        if (path / "aclImdb").is_dir():
            path = path / "aclImdb"
        missing = [f"{s}/{c}" for s in SPLITS for c in LABELS if not (path / s / c).is_dir()]
        if missing:
            raise DataError(f"folder {path} is not in the aclImdb layout: missing "
                            f"{', '.join(missing)} (expected aclImdb/{{train,test}}/{{pos,neg}}/*.txt)")
        return DataSource("folder", path)
    if not path.is_file():                  # a pipe would block the read below for ever
        raise DataError(f"data path {path} is not a regular file or a folder (a device, pipe or "
                        "socket): pass an aclImdb .tar.gz archive, an extracted aclImdb/ folder, or 'tfds'")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"\x1f\x8b":
        raise DataError(f"{path} is not a gzip archive (it does not start with the gzip magic "
                        "bytes); pass the aclImdb .tar.gz, an extracted aclImdb/ folder, or 'tfds'")
    return DataSource("archive", path)


def fingerprint(source: DataSource) -> str:
    """sha256 of the archive's bytes; for a folder, of every review's path and bytes."""
    digest = hashlib.sha256()
    if source.kind == "archive":
        with open(source.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    elif source.kind == "folder":
        for split in SPLITS:
            for category in LABELS:
                for file in sorted((source.path / split / category).glob("*.txt")):
                    digest.update(f"{split}/{category}/{file.name}\0".encode())
                    digest.update(_review_file(file))
    else:
        raise DataError("tfds data has no file fingerprint")
    return digest.hexdigest()


def read_reviews(source: DataSource) -> dict[str, list[Review]]:
    """All labeled reviews of both splits, each split in tfds's stored order."""
    reader = {"archive": _read_archive, "folder": _read_folder}.get(source.kind)
    if reader is None:
        raise DataError(f"cannot read reviews from a {source.kind} source")
    splits: dict[str, list[Review]] = {split: [] for split in SPLITS}
    for split, review in reader(source.path):
        splits[split].append(review)
    for split, reviews in splits.items():
        counts = {name: sum(r.label == label for r in reviews) for name, label in LABELS.items()}
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            raise DataError(f"{source.describe()} has no {split}/{' or '.join(empty)} reviews: "
                            "expected aclImdb/{train,test}/{pos,neg}/*.txt")
        reviews.sort(key=lambda r: tfds_order_key(split, r.key))
    return splits


def tfds_order_key(split: str, key: str) -> int:
    """tfds's shuffling writer sorts examples by ``int(md5(split + key))``."""
    return int(hashlib.md5((split + key).encode("utf-8")).hexdigest(), 16)


def _read_archive(path: Path) -> Iterator[tuple[str, Review]]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                match = _MEMBER_RE.match(member.name)
                if not match or not member.isfile():
                    continue
                key, split, category = match.groups()
                if member.size > MAX_REVIEW_BYTES:
                    raise DataError(f"{path}: {key} holds {member.size:,} bytes, not a review (an "
                                    "aclImdb review is under 14 kB): pass the aclImdb archive")
                yield split, _review(key, category, tar.extractfile(member).read())
    except (tarfile.ReadError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read archive {path}: {err}. The file is truncated or corrupt: "
                        "download it again (the official archive is 84,125,825 bytes)") from err


def _read_folder(path: Path) -> Iterator[tuple[str, Review]]:
    for split in SPLITS:
        for category in LABELS:
            for file in sorted((path / split / category).glob("*.txt")):
                key = f"aclImdb/{split}/{category}/{file.name}"
                yield split, _review(key, category, _review_file(file))


def _review_file(file: Path) -> bytes:
    """The bytes of a review file of an extracted folder, refused if it is no regular file
    (a FIFO would block the read for ever) or too big to be a review."""
    if not file.is_file():
        raise DataError(f"{file} is not a regular file: an aclImdb review is a .txt file")
    if file.stat().st_size > MAX_REVIEW_BYTES:
        raise DataError(f"{file} holds {file.stat().st_size:,} bytes, not a review (an aclImdb "
                        "review is under 14 kB): remove it or restore the folder")
    return file.read_bytes()


def _review(key: str, category: str, raw: bytes) -> Review:
    text = raw.strip()
    if not text:
        raise DataError(f"review {key} is empty: every aclImdb review has text. Remove the "
                        "file or restore it from the original archive")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"review {key} is not valid UTF-8 (byte {err.start}: "
                        f"{text[err.start:err.start + 1]!r}); tfds would fail on it too. Restore "
                        "the file from the original archive or re-save it as UTF-8") from err
    return Review(key=key, text=text, label=LABELS[category])
