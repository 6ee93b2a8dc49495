"""The tutorial's Embedding Projector files, TensorBoard's projector config, and neighbours.

``vecs.tsv`` / ``meta.tsv`` (the tutorial's format): one line per entry of ``encoder.subwords``,
in order; line k of meta.tsv is ``subwords[k]`` and line k of vecs.tsv is embedding row k + 1
(row 0, padding, is skipped; the 256 byte tokens after the subwords are not written).  Two
subwords contain U+0085 (NEL): read these files splitting on "\\n" only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from npembed.atomic import atomic_write_text

PROJECTOR_CONFIG = """embeddings {{
  tensor_name: "{name}"
  tensor_path: "{vecs}"
  metadata_path: "{meta}"
}}
"""


def write_projector_files(folder: str | os.PathLike, table: np.ndarray, subwords: list[str],
                          tensor_name: str = "embedding") -> dict[str, Path]:
    """Write vecs.tsv, meta.tsv and projector_config.pbtxt into ``folder`` (atomically)."""
    folder = Path(folder)
    if table.shape[0] < len(subwords) + 1:
        raise ValueError(f"the embedding has {table.shape[0]} rows, fewer than the {len(subwords)} "
                         "subwords + padding: was it trained with this vocabulary?")
    vectors = table[1:len(subwords) + 1]
    vecs = "".join("\t".join(repr(float(x)) for x in row) + "\n" for row in vectors)
    meta = "".join(f"{subword}\n" for subword in subwords)
    paths = {"vecs": folder / "vecs.tsv", "meta": folder / "meta.tsv",
             "config": folder / "projector_config.pbtxt"}
    atomic_write_text(paths["vecs"], vecs)
    atomic_write_text(paths["meta"], meta)
    atomic_write_text(paths["config"], PROJECTOR_CONFIG.format(name=tensor_name, vecs="vecs.tsv", meta="meta.tsv"))
    return paths


def read_tsv_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a projector file, split on "\\n" only (not on U+0085 as str.splitlines would)."""
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def nearest_neighbors(table: np.ndarray, row: int | np.ndarray, k: int = 10,
                      exclude: tuple[int, ...] = (0,)) -> list[tuple[int, float]]:
    """The ``k`` rows most cosine-similar to ``row`` (an index, or a query vector).

    Returns ``[(row index, cosine similarity), ...]`` best first, at most ``k`` (fewer when the
    table has fewer rows left); the query row and the ``exclude`` rows (padding by default) are
    left out.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    norms = np.linalg.norm(table, axis=1)
    norms[norms == 0] = 1.0
    query = table[row] if np.isscalar(row) or np.ndim(row) == 0 else np.asarray(row, dtype=table.dtype)
    similarity = table @ query / (norms * (np.linalg.norm(query) or 1.0))
    banned = list(exclude) + ([int(row)] if np.ndim(row) == 0 else [])
    similarity[banned] = -np.inf
    best = np.argsort(-similarity, kind="stable")[:k]
    return [(int(i), float(similarity[i])) for i in best if similarity[i] != -np.inf]
