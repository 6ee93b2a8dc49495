"""tfds's ``SubwordTextEncoder``, in pure Python: load, save, encode, decode, build.

A line-by-line port of ``tensorflow_datasets.core.deprecated.text.subword_text_encoder`` (tfds
4.9) without its TensorFlow imports, so that a NumPy-only user can encode reviews and build the
``subwords8k`` vocabulary.  Tests prove it equal to tfds's own class: the same vocabulary from
the same corpus, and the same ids for every review.

Ids: 0 is padding; ``1 .. len(subwords)`` are the subwords; the last 256 ids are raw bytes, the
fallback for anything the subwords cannot spell.  ``vocab_size = 1 + len(subwords) + 256``.
A subword ending in ``_`` ends a word: decoding writes a space after it.
"""
from __future__ import annotations

import collections
import json
import os
import re
from typing import Iterable

from npembed.atomic import atomic_write_bytes

NUM_BYTES = 2 ** 8
UNDERSCORE_REPLACEMENT = "\\&undsc"
_ALL_REGEX = re.compile(r"(\W+)", flags=re.UNICODE)
MAX_FILE_BYTES = 64 << 20           # a subwords8k file is about 70 kB
_FILE_HEADER = "### SubwordTextEncoder"
_METADATA_PREFIX = "### Metadata: "


class SubwordEncoder:
    """Greedy longest-match subword encoder with a byte fallback (tfds's format and behaviour)."""

    def __init__(self, subwords: list[str]):
        self._subwords = [s for s in subwords if s]
        self._subword_to_id = {s: i for i, s in enumerate(self._subwords)}
        self._max_subword_len = max(len(UNDERSCORE_REPLACEMENT), max((len(s) for s in self._subwords), default=1))
        reserved = {UNDERSCORE_REPLACEMENT} | {s for s in self._subwords if _is_mixed_alphanum(s)}
        self._tokenizer = _Tokenizer(reserved)
        self._token_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def subwords(self) -> list[str]:
        return list(self._subwords)

    @property
    def vocab_size(self) -> int:
        return 1 + len(self._subwords) + NUM_BYTES

    def __repr__(self) -> str:
        return f"<SubwordEncoder vocab_size={self.vocab_size}>"

    # ------------------------------------------------------------------ encode / decode
    def encode(self, text: str | bytes) -> list[int]:
        """Text (str, or UTF-8 bytes) -> ids in [1, vocab_size)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        ids: list[int] = []
        for token in _prepare_tokens_for_encode(self._tokenizer.tokenize(text)):
            ids.extend(self._token_to_ids(token))
        return [i + 1 for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; trailing padding (0) is dropped, as tfds does."""
        ids = _strip_padding_and_shift(list(ids))
        pieces: list[str] = []
        pending_bytes: list[bytes] = []
        for subword_id in ids:
            subword = self._id_to_subword(subword_id)
            if isinstance(subword, bytes):
                pending_bytes.append(subword)
                continue
            if pending_bytes:
                pieces.append(b"".join(pending_bytes).decode("utf-8", "replace"))
                pending_bytes = []
            if subword.endswith("_"):
                pieces.extend((subword[:-1], " "))
            else:
                pieces.append(subword)
        if pending_bytes:
            pieces.append(b"".join(pending_bytes).decode("utf-8", "replace"))
        return "".join(pieces)

    def id_to_piece(self, token_id: int) -> str:
        """A readable name for one id: the subword, ``<pad>``, or ``<byte 0x41>``."""
        if token_id == 0:
            return "<pad>"
        piece = self._id_to_subword(token_id - 1)
        return f"<byte 0x{piece[0]:02x}>" if isinstance(piece, bytes) else piece

    def _token_to_ids(self, token: str) -> list[int]:
        cached = self._token_cache.get(token)
        if cached is not None:
            return cached
        ids: list[int] = []
        for subword in self._token_to_subwords(token):
            if subword == UNDERSCORE_REPLACEMENT:
                ids.append(len(self._subwords) + ord("_"))
                continue
            subword_id = self._subword_to_id.get(subword)
            if subword_id is None:
                ids.extend(self._byte_encode(subword))
            else:
                ids.append(subword_id)
        self._token_cache[token] = ids
        return ids

    def _byte_encode(self, token: str) -> list[int]:
        offset = len(self._subwords)
        if token == "_":
            return [offset + ord(" ")]
        return [offset + b for b in token.encode("utf-8")]

    def _id_to_subword(self, subword_id: int) -> str | bytes:
        if subword_id < 0 or subword_id >= self.vocab_size - 1:
            raise ValueError(f"id {subword_id + 1} is not in this vocabulary: ids must be within "
                             f"[0, {self.vocab_size})")
        if subword_id < len(self._subwords):
            return self._subwords[subword_id]
        return bytes([subword_id - len(self._subwords)])

    def _token_to_subwords(self, token: str) -> list[str]:
        """Greedy longest match from the left; an unknown character is taken alone."""
        subwords = []
        start = 0
        while start < len(token):
            for end in range(min(len(token), start + self._max_subword_len), start, -1):
                candidate = token[start:end]
                if candidate in self._subword_to_id or candidate == UNDERSCORE_REPLACEMENT:
                    subwords.append(candidate)
                    start = end
                    break
            else:
                subwords.append(token[start])
                start += 1
        return subwords

    # ------------------------------------------------------------------ files
    def save_to_file(self, filename_prefix: str | os.PathLike) -> str:
        """Write ``<prefix>.subwords`` in tfds's format, atomically; returns the path."""
        path = os.fspath(filename_prefix) + ".subwords"
        lines = [_FILE_HEADER, _METADATA_PREFIX + json.dumps({}, sort_keys=True)]
        lines += [f"'{s}'" for s in self._subwords]
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load_from_file(cls, filename_prefix: str | os.PathLike) -> "SubwordEncoder":
        """Read ``<prefix>.subwords`` (or the path itself if it ends in ``.subwords``)."""
        path = os.fspath(filename_prefix)
        if not path.endswith(".subwords"):
            path += ".subwords"
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:       # a device or a huge file: never read it all
            raise ValueError(f"{path} holds more than {MAX_FILE_BYTES >> 20} MiB: not a vocabulary file")
        # tfds splits on b"\n" only: two subwords contain U+0085, which str.splitlines breaks on.
        lines = [line.decode("utf-8") for line in raw.split(b"\n")]
        if lines and lines[-1] == "":
            lines.pop()
        if not lines or lines[0] != _FILE_HEADER:
            raise ValueError(f"{path} is not a tfds SubwordTextEncoder vocabulary file (its first "
                             f"line should be {_FILE_HEADER!r})")
        return cls([line[1:-1] for line in lines[2:]])

    # ------------------------------------------------------------------ building
    @classmethod
    def build_from_corpus(cls, corpus: Iterable[str], target_vocab_size: int,
                          max_subword_length: int = 20, progress=None) -> "SubwordEncoder":
        """tfds's ``build_from_corpus`` (no reserved tokens, no character limit): count tokens,
        then binary-search the minimum subword count whose vocabulary lands within 1% of
        ``target_vocab_size``, 4 refinement iterations per candidate.

        progress: optional callable ``progress(message)`` told about each candidate.
        """
        if target_vocab_size < NUM_BYTES + 2:
            raise ValueError(f"target_vocab_size must be >= {NUM_BYTES + 2}, got {target_vocab_size}")
        token_counts = _token_counts(corpus)
        if not token_counts:
            raise ValueError("cannot build a vocabulary from an empty corpus")

        def search(low: int, high: int) -> SubwordEncoder:
            candidate = (low + high) // 2
            encoder = build_from_token_counts(token_counts, candidate, max_subword_length)
            if progress:
                progress(f"min_count={candidate}: vocab_size={encoder.vocab_size}")
            size = encoder.vocab_size
            if abs(size - target_vocab_size) * 100 < target_vocab_size or low >= high or candidate <= 1:
                return encoder
            if size > target_vocab_size:
                other = search(candidate + 1, high)
            else:
                other = search(low, candidate - 1)
            if abs(size - target_vocab_size) < abs(other.vocab_size - target_vocab_size):
                return encoder
            return other

        return search(max(min(token_counts.values()), 1), max(token_counts.values()))


def build_from_token_counts(token_counts: dict[str, int], min_token_count: int,
                        max_subword_length: int, num_iterations: int = 4) -> SubwordEncoder:
    """tfds's ``_build_from_token_counts``: ``num_iterations`` rounds of counting every substring
    (up to ``max_subword_length`` characters) of each token's current split, keeping those seen
    at least ``min_token_count`` times, longest first, each kept one's count taken from its
    prefixes; the kept subwords, most frequent first, are the next round's vocabulary."""
    subwords: list[str] = []
    for _ in range(num_iterations):
        encoder = SubwordEncoder(subwords)
        subword_counts: dict[str, int] = collections.defaultdict(int)
        for token, count in token_counts.items():
            start = 0
            for subword in encoder._token_to_subwords(token):
                last = min(len(token), start + max_subword_length)
                for end in range(start + 1, last + 1):
                    subword_counts[token[start:end]] += count
                start += len(subword)
        by_length: list[set[str]] = [set() for _ in range(max_subword_length + 1)]
        for subword, count in subword_counts.items():
            if count >= min_token_count and len(subword.encode("utf-8")) > 1:
                by_length[len(subword)].add(subword)
        candidates = []
        for length in reversed(range(max_subword_length + 1)):
            for subword in by_length[length]:
                count = subword_counts[subword]
                if count < min_token_count:
                    continue
                candidates.append((count, subword))
                for end in range(1, length):
                    subword_counts[subword[:end]] -= count
        candidates.sort(reverse=True)
        subwords = [s for _, s in candidates]
    return SubwordEncoder(subwords)


class _Tokenizer:
    """tfds's invertible Tokenizer (``alphanum_only=False``): reserved tokens are split out
    whole, the rest into alternating runs of word and non-word characters."""

    def __init__(self, reserved_tokens: set[str]):
        self._reserved = reserved_tokens
        escaped = [re.sub(r"[(){}\[\].*?|^$\\+-]", r"\\\g<0>", t) for t in reserved_tokens]
        self._reserved_re = re.compile("(%s)" % "|".join(escaped), flags=re.UNICODE) if escaped else None

    def tokenize(self, text: str) -> list[str]:
        pieces = self._reserved_re.split(text) if self._reserved_re else [text]
        tokens: list[str] = []
        for piece in pieces:
            if piece in self._reserved:
                tokens.append(piece)
            else:
                tokens.extend(_ALL_REGEX.split(piece))
        return [t for t in tokens if t]


def _is_mixed_alphanum(token: str) -> bool:
    return len([s for s in _ALL_REGEX.split(token) if s]) > 1


def _prepare_tokens_for_encode(tokens: list[str]) -> list[str]:
    """Escape ``_``; a token followed by a single space gets ``_`` appended and the space is
    dropped; a literal escape sequence in the text is split in two."""
    prepared = []
    skip_next = False
    for token, next_token in zip(tokens, tokens[1:] + [None]):
        if skip_next:
            skip_next = False
            continue
        if token == UNDERSCORE_REPLACEMENT:
            first, second = UNDERSCORE_REPLACEMENT[:2], UNDERSCORE_REPLACEMENT[2:]
            prepared.append(first.replace("_", UNDERSCORE_REPLACEMENT))
            second = second.replace("_", UNDERSCORE_REPLACEMENT)
            if next_token == " ":
                second += "_"
            prepared.append(second)
            continue
        token = token.replace("_", UNDERSCORE_REPLACEMENT)
        if next_token == " ":
            token += "_"
            skip_next = True
        prepared.append(token)
    return prepared


def _token_counts(corpus: Iterable[str | bytes]) -> dict[str, int]:
    reserved = {UNDERSCORE_REPLACEMENT}
    tokenizer = _Tokenizer(reserved)
    counts: dict[str, int] = collections.defaultdict(int)
    for text in corpus:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        for token in _prepare_tokens_for_encode(tokenizer.tokenize(text)):
            counts[token] += 1
    return counts


def _strip_padding_and_shift(ids: list[int]) -> list[int]:
    """tfds's ``pad_decr``: drop trailing zeros, then subtract 1 from every id."""
    while ids and ids[-1] == 0:
        ids.pop()
    return [i - 1 for i in ids]
