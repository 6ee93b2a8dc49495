"""The fast twin of ``SubwordEncoder.build_from_corpus`` and of encoding many texts, in NumPy.

``subwords.py`` holds the readable port of tfds's builder; the tests hold this module to it, output
for output (the same subwords in the same order, the same ids).  What makes it fast:

1. **Every substring once.**  tfds's builder hashes ``token[start:end]`` strings again and again:
   for the IMDB train split, 16 candidate ``min_count`` values x 4 refinement iterations x about
   5.1 million (token, start, end) triples of 136,656 distinct tokens.  Here every distinct
   substring of length 1..20 of every distinct token gets an integer *node* id once, length by
   length, like a trie of all the tokens' suffixes: the substring of length L at position p is
   the pair (node of length L-1 at p, character at p+L-1), numbered by ``np.unique``.  Node ids
   of one length are contiguous, and each node knows its *parent*, the node of its first L-1
   characters (its longest proper prefix).
2. **Counting is a bincount.**  One iteration of tfds's loop counts, for every segment start of
   every token (its greedy split by the current subwords), the substrings that start there,
   weighted by the token's count.  Each segment start adds its token's count to the longest
   substring starting there (one ``np.bincount``); one pass over lengths, longest first, adds
   every node's count to its parent.  The first iteration splits by no subwords, so its counts
   do not depend on ``min_count``: they are computed once for the whole search.
3. **The prefix subtraction is a pass over lengths.**  tfds walks the candidates longest first and
   subtracts each accepted subword's count from all its proper prefixes.  A node loses what its
   children lost plus the counts of those of them accepted, so one bincount per length, longest
   first, does them all.
4. **The greedy split is vectorised**: the longest subword starting at each position is the
   longest matching prefix of its longest substring, found for all nodes in one pass over
   lengths; then the segment starts are followed from each token's first position, all tokens
   at once (one round per segment of the longest token).

Tokens and ids (``tokenize``, ``encode_tokenized``, ``encode_texts``): where the native module
builds (``npembed/csrc/tokenizer.c``, compiled with the kernels' C backend), C cuts all the texts into tfds's prepared
tokens in one pass over their UTF-8 bytes, numbering the distinct tokens with a hash table; whether
a character is a word character (``\\w``) comes from a table that Python's own ``re`` fills for
the code points present.  C then splits each distinct token into subword ids (the reference's
greedy longest match, with a hash table of the subwords) and copies the ids of every occurrence.
Without a C compiler: one regular expression per text, each distinct token encoded once by the
reference encoder (for the corpus the vocabulary was built from, all at once by
:meth:`FastBuilder.token_ids`), and the ids gathered with NumPy.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Iterable, Sequence

import numpy as np

from npembed.datasets.subwords import (NUM_BYTES, UNDERSCORE_REPLACEMENT, SubwordEncoder, _prepare_tokens_for_encode,
                                       _Tokenizer)

# tfds's tokens after ``_prepare_tokens_for_encode``, found in one pass: a word run followed by
# exactly one space (the space then becomes the word's trailing "_"), a word run, a non-word run.
# A non-word run is never followed by a lone space token (the runs are maximal), so only words merge.
# (Written so that nothing backtracks: ``\w+`` takes the whole run, then the space is optional.)
_PREPARED_TOKEN_RE = re.compile(r"\w+(?: (?=\w|\Z))?|\W+", flags=re.UNICODE)
_WORD_RE = re.compile(r"\w", flags=re.UNICODE)


# ---------------------------------------------------------------------------------- tokens
def _raw_to_prepared(raw: str) -> str:
    """A token as ``_PREPARED_TOKEN_RE`` finds it -> the token tfds counts and encodes: ``_``
    escaped, and a word's trailing space written as ``_``."""
    if raw.endswith(" ") and _WORD_RE.match(raw):
        return raw[:-1].replace("_", UNDERSCORE_REPLACEMENT) + "_"
    return raw.replace("_", UNDERSCORE_REPLACEMENT)


@dataclasses.dataclass
class Tokenized:
    """Texts cut into tfds's prepared tokens (``_prepare_tokens_for_encode(tokenize(text))``).

    tokens        the distinct tokens, T of them
    token_index   (M,) int32: the tokens of every text in order, as indices into ``tokens``
    offsets       (R+1,) int64: text r's tokens are ``token_index[offsets[r]:offsets[r+1]]``
    """

    tokens: list[str]
    token_index: np.ndarray
    offsets: np.ndarray

    def counts(self) -> dict[str, int]:
        """Token -> occurrences (tfds's ``_token_counts_from_generator``)."""
        counts = np.bincount(self.token_index, minlength=len(self.tokens)).tolist()
        return {token: count for token, count in zip(self.tokens, counts) if count}


class _Numbering(dict):
    """key -> 0, 1, 2, ... in order of first lookup (``__getitem__`` numbers a new key)."""

    def __missing__(self, key):
        number = self[key] = len(self)
        return number


def tokenize(texts: Iterable[str | bytes]) -> Tokenized:
    """Cut every text into tfds's tokens (``_prepare_tokens_for_encode(tokenize(text))`` of the
    reference tokenizer with the escape sequence reserved), distinct tokens in order of first
    sight: in C where the native module builds, else :func:`tokenize_python`."""
    texts = list(texts)
    if _native() is not None:
        try:
            data = [text.encode("utf-8") if isinstance(text, str) else text for text in texts]
        except UnicodeEncodeError:           # a str with lone surrogates: Python's path handles it
            return tokenize_python(texts)
        tokenized = _tokenize_native(data)
        if tokenized is not None:
            return tokenized
    return tokenize_python(texts)


def _tokenize_native(data: list[bytes]) -> Tokenized | None:
    """:func:`tokenize` in C on UTF-8 texts (None when one is not UTF-8)."""
    from npembed import native
    text = b"".join(data)
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)), out=offsets[1:])
    present = native.code_points_present(text)
    if present is None:
        return None
    index, token_offsets, prepared, chars = native.tokenize(text, offsets, _word_table(present))
    prepared_text, ends = prepared.decode("utf-8"), np.cumsum(chars).tolist()
    tokens = [prepared_text[a:b] for a, b in zip([0] + ends[:-1], ends)]
    return Tokenized(tokens, index, token_offsets)


def _word_table(present: np.ndarray) -> np.ndarray:
    """(0x110000,) uint8: 1 for the code points in ``present`` that Python's ``re`` counts as \\w
    (letters, digits, numerics in Unicode's sense, and "_"), the definition tfds's tokenizer uses."""
    codes = np.flatnonzero(present)
    word = np.zeros(len(present), dtype=np.uint8)
    word[codes] = [_WORD_RE.match(chr(code)) is not None for code in codes.tolist()]
    return word


def _native():
    """The native module's wrappers (npembed.native) when the C backend is in use, else None."""
    from npembed import kernels
    if kernels.backend() != "native":
        return None
    from npembed import native
    return native


def tokenize_python(texts: Iterable[str | bytes]) -> Tokenized:
    """:func:`tokenize` without C: one regular expression per text, every token numbered
    by a dict lookup from C (``map``), each distinct token prepared once.  A text that spells the
    escape sequence ``\\&undsc`` itself goes through the reference tokenizer, which splits it out
    as a reserved token; its tokens are numbered as ``(token,)`` so as not to be prepared twice."""
    numbering = _Numbering()
    reference = _Tokenizer({UNDERSCORE_REPLACEMENT})
    pieces, lengths = [], []
    for text in texts:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        if UNDERSCORE_REPLACEMENT in text:
            found = [(token,) for token in _prepare_tokens_for_encode(reference.tokenize(text))]
        else:
            found = _PREPARED_TOKEN_RE.findall(text)
        pieces.append(np.fromiter(map(numbering.__getitem__, found), dtype=np.int32, count=len(found)))
        lengths.append(len(found))
    # number the prepared tokens; two found forms never prepare to the same token, except that a
    # reference-tokenized text may repeat a token of the others
    tokens = _Numbering()
    prepared = np.fromiter((tokens[key[0] if isinstance(key, tuple) else _raw_to_prepared(key)]
                            for key in numbering), dtype=np.int32, count=len(numbering))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    token_index = prepared[np.concatenate(pieces)] if pieces else np.zeros(0, dtype=np.int32)
    return Tokenized(list(tokens), token_index, offsets)


def token_counts(corpus: Iterable[str | bytes]) -> dict[str, int]:
    """``subwords._token_counts`` (tfds's ``_token_counts_from_generator``), fast."""
    return tokenize(corpus).counts()


def encode_tokenized(encoder: SubwordEncoder, tokenized: Tokenized) -> tuple[np.ndarray, np.ndarray]:
    """(ids (total,) int32, offsets (R+1,) int64): text r's ids are ``ids[offsets[r]:offsets[r+1]]``,
    equal to ``encoder.encode(text r)``.  Each distinct token is encoded once by the reference
    encoder; the ids of the texts are then one gather.

    Valid for an encoder whose only reserved token is the escape sequence (one without mixed
    letter/punctuation subwords, as subwords8k): otherwise its tokenizer splits such subwords
    out first and :func:`encode_texts` uses the reference encoder text by text.
    """
    native = _native()
    if native is not None:
        token_ids, id_offsets = token_ids_native(encoder, tokenized.tokens)
        return native.gather_ids(tokenized.token_index, id_offsets, token_ids, tokenized.offsets)
    per_token = [encoder._token_to_ids(token) for token in tokenized.tokens]
    token_length = np.fromiter(map(len, per_token), dtype=np.int64, count=len(per_token))
    token_start = np.zeros(len(per_token) + 1, dtype=np.int64)
    np.cumsum(token_length, out=token_start[1:])
    token_ids = np.fromiter(itertools.chain.from_iterable(per_token), dtype=np.int32, count=int(token_start[-1])) + 1
    # each occurrence o of token t copies token_ids[token_start[t] : token_start[t] + token_length[t]]
    occurrence_length = token_length[tokenized.token_index]
    occurrence_end = np.cumsum(occurrence_length)
    shift = np.repeat(token_start[tokenized.token_index] - (occurrence_end - occurrence_length), occurrence_length)
    ids = token_ids[np.arange(int(occurrence_end[-1]) if len(occurrence_end) else 0) + shift]
    offsets = np.concatenate([[0], occurrence_end])[tokenized.offsets]
    return ids, offsets.astype(np.int64)


def token_ids_native(encoder: SubwordEncoder, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (total,) int32, id_offsets (T+1,) int64): token t's ids are
    ``ids[id_offsets[t]:id_offsets[t+1]]`` = ``1 + encoder._token_to_ids(tokens[t])``, in C."""
    from npembed import native
    token_bytes = [token.encode("utf-8") for token in tokens]
    subword_bytes = [subword.encode("utf-8") for subword in encoder._subwords]
    ends = [np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))
            for pieces in (token_bytes, subword_bytes)]
    return native.encode_tokens(b"".join(token_bytes), ends[0], b"".join(subword_bytes), ends[1],
                                encoder._max_subword_len)


def encode_texts(encoder: SubwordEncoder, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets) of ``[encoder.encode(t) for t in texts]``, flattened (see encode_tokenized)."""
    if encoder._tokenizer._reserved != {UNDERSCORE_REPLACEMENT}:
        per_text = [encoder.encode(text) for text in texts]
        lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
        ids = np.fromiter(itertools.chain.from_iterable(per_text), dtype=np.int32, count=int(lengths.sum()))
        return ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return encode_tokenized(encoder, tokenize(texts))


# ---------------------------------------------------------------------------------- substrings
class SubstringTable:
    """Integer ids ("nodes") for every distinct substring of length 1..max_length of ``tokens``.

    Positions index the concatenation of the tokens' characters (code points), N of them.
    Nodes, K of them, are numbered length by length: the nodes of length L are
    ``level_start[L-1] <= node < level_start[L]``.  Arrays:

        deepest      (N,) int32     node of ``text[p : p + min(max_length, end - p)]``, the longest
                                    substring starting at p inside its token
        parent       (K,) int32     node of the first L-1 characters (-1 for L = 1); the nodes of
                                    ``text[p:p+l]`` for l = 1..L are deepest[p] and its ancestors
        first_pos    (K,) int64     a position where the substring occurs
        multibyte    (K,) bool      its UTF-8 form has more than one byte
    """

    def __init__(self, tokens: Sequence[str], max_length: int):
        self.text = "".join(tokens)
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        self.token_end = np.cumsum(lengths)                     # one past each token's last character
        self.token_start = self.token_end - lengths
        self.token_of_position = np.repeat(np.arange(len(lengths)), lengths)
        self.position_end = self.token_end[self.token_of_position]   # (N,) end of the token holding p
        codes = np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)
        self.codes = codes                                       # (N,) code point at each position
        alphabet, chars = np.unique(codes, return_inverse=True)   # dense character ids
        chars = chars.astype(np.int64).ravel()
        num_chars = len(alphabet)

        starts = np.arange(len(codes), dtype=np.int64)           # positions with >= L characters left
        keys = chars                                             # (starts,) identifies text[p:p+L]
        self.deepest = np.zeros(len(codes), dtype=np.int32)
        parents, first_positions, self.level_start = [], [], [0]
        for length in range(1, max_length + 1):
            unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            base = self.level_start[-1]
            node = inverse.ravel().astype(np.int64) + base
            self.deepest[starts] = node                          # longer substrings overwrite later
            parents.append(np.full(len(unique_keys), -1) if length == 1 else unique_keys // num_chars)
            first_positions.append(starts[first])
            self.level_start.append(base + len(unique_keys))
            longer = self.position_end[starts] - starts > length
            starts, keys = starts[longer], node[longer] * num_chars + chars[starts[longer] + length]
            if starts.size == 0:
                break
        self.num_nodes = self.level_start[-1]
        self.num_levels = len(self.level_start) - 1
        self.parent = np.concatenate(parents).astype(np.int32)
        self.first_pos = np.concatenate(first_positions)
        self.multibyte = np.ones(self.num_nodes, dtype=bool)
        self.multibyte[:self.level_start[1]] = alphabet >= 0x80

    def level(self, length: int) -> slice:
        """The nodes of substrings of ``length`` characters."""
        return slice(self.level_start[length - 1], self.level_start[length])

    def strings(self, nodes: np.ndarray) -> list[str]:
        lengths = np.searchsorted(self.level_start, nodes, side="right")
        return [self.text[p:p + n] for p, n in zip(self.first_pos[nodes].tolist(), lengths.tolist())]

    def find(self, substring: str) -> int:
        """The node of ``substring``, or -1 when no token contains it (or it is too long)."""
        length = len(substring)
        position = self.text.find(substring)
        while position >= 0 and 0 < length <= self.num_levels:
            if self.position_end[position] - position >= length:
                node = int(self.deepest[position])
                while node >= self.level_start[length]:
                    node = int(self.parent[node])
                return node
            position = self.text.find(substring, position + 1)
        return -1

    def sum_to_ancestors(self, own: np.ndarray) -> np.ndarray:
        """(K,) ``total[n] = own[n] + total of n's children``: a node's value plus its descendants'."""
        total = own.copy()
        for length in range(self.num_levels, 1, -1):
            level, below = self.level(length), self.level(length - 1)
            total[below] += np.bincount(self.parent[level] - below.start, weights=total[level],
                                        minlength=below.stop - below.start).astype(total.dtype)
        return total


# ---------------------------------------------------------------------------------- building
class FastBuilder:
    """``SubwordEncoder.build_from_corpus`` on a :class:`SubstringTable` of the corpus's tokens."""

    def __init__(self, token_counts: dict[str, int], max_subword_length: int = 20):
        tokens = list(token_counts)
        # the split also matches the 7-character escape sequence, even with shorter subwords
        self.max_subword_length = max_subword_length
        self.table = SubstringTable(tokens, max(max_subword_length, len(UNDERSCORE_REPLACEMENT)))
        counts = np.fromiter((token_counts[t] for t in tokens), dtype=np.float64, count=len(tokens))
        self.position_weight = counts[self.table.token_of_position]    # (N,) count of p's token
        self.token_counts = token_counts
        self.escape_node = self.table.find(UNDERSCORE_REPLACEMENT)
        self.first_counts = self._count(self._segment_starts(np.zeros(0, dtype=np.int64)))

    def build(self, min_token_count: int, num_iterations: int = 4) -> list[str]:
        """The subwords of ``subwords.build_from_token_counts(token_counts, min_token_count, ...)``:
        ``num_iterations`` rounds of split, count, select, each splitting by the last one's subwords."""
        return self._build(min_token_count, num_iterations)[1]

    def _build(self, min_token_count: int, num_iterations: int = 4) -> tuple[np.ndarray, list[str]]:
        subword_nodes = np.zeros(0, dtype=np.int64)
        subwords: list[str] = []
        for iteration in range(num_iterations):
            counts = self.first_counts if iteration == 0 else self._count(self._segment_starts(subword_nodes))
            subword_nodes, subwords = self._select(counts, min_token_count)
        return subword_nodes, subwords

    def build_from_corpus(self, target_vocab_size: int, progress=None) -> SubwordEncoder:
        """tfds's binary search over ``min_count`` (see ``SubwordEncoder.build_from_corpus``).
        The encoder returned already knows the ids of every token of the corpus (its cache is
        filled by :meth:`token_ids`, so encoding the corpus encodes no token one by one)."""
        def search(low: int, high: int) -> tuple[SubwordEncoder, np.ndarray]:
            candidate = (low + high) // 2
            nodes, subwords = self._build(candidate)
            encoder = SubwordEncoder(subwords)
            if progress:
                progress(f"min_count={candidate}: vocab_size={encoder.vocab_size}")
            size = encoder.vocab_size
            if abs(size - target_vocab_size) * 100 < target_vocab_size or low >= high or candidate <= 1:
                return encoder, nodes
            if size > target_vocab_size:
                other = search(candidate + 1, high)
            else:
                other = search(low, candidate - 1)
            if abs(size - target_vocab_size) < abs(other[0].vocab_size - target_vocab_size):
                return encoder, nodes
            return other

        values = self.token_counts.values()
        encoder, nodes = search(max(min(values), 1), max(values))
        encoder._token_cache.update(zip(self.token_counts, self.token_ids(nodes)))
        return encoder

    def token_ids(self, subword_nodes: np.ndarray) -> list[list[int]]:
        """``[encoder._token_to_ids(t) for t in tokens]`` for the encoder of the subwords
        ``subword_nodes`` (in id order), all tokens at once: the greedy split, then per segment
        the subword's id, the escape sequence's (the byte id of ``_``), or an unmatched
        character's UTF-8 byte ids (``_`` alone: the byte id of a space)."""
        table, num_subwords = self.table, len(subword_nodes)
        starts = np.flatnonzero(self._segment_starts(subword_nodes))
        ends = np.minimum(np.append(starts[1:], len(table.codes)), table.position_end[starts])
        lengths = ends - starts
        node = table.deepest[starts].astype(np.int64)            # climb to the segment's own node
        node_length = np.searchsorted(table.level_start, node, side="right")
        while np.any(node_length > lengths):
            climb = node_length > lengths
            node[climb] = table.parent[node[climb]]
            node_length[climb] -= 1
        subword_id = np.full(table.num_nodes, -1, dtype=np.int64)
        subword_id[subword_nodes] = np.arange(num_subwords)
        ids = np.where(node == self.escape_node, num_subwords + ord("_"), subword_id[node])
        # unmatched characters: their UTF-8 bytes, 1 to 4 ids each
        code = table.codes[starts].astype(np.int64)
        unmatched = ids < 0
        width = np.where(unmatched, 1 + (code >= 0x80) + (code >= 0x800) + (code >= 0x10000), 1)
        out_start = np.concatenate([[0], np.cumsum(width)])
        out = np.empty(int(out_start[-1]), dtype=np.int64)
        out[out_start[:-1]] = ids
        for n in (1, 2, 3, 4):
            these = np.flatnonzero(unmatched & (width == n))
            for k, byte in enumerate(_utf8_bytes(code[these], n)):
                out[out_start[these] + k] = num_subwords + byte
        space = unmatched & (code == ord("_"))
        out[out_start[:-1][space]] = num_subwords + ord(" ")
        token_bounds = out_start[np.searchsorted(starts, table.token_start)].tolist() + [len(out)]
        flat = out.tolist()
        return [flat[a:b] for a, b in zip(token_bounds[:-1], token_bounds[1:])]

    def _segment_starts(self, subword_nodes: np.ndarray) -> np.ndarray:
        """(N,) bool: where the greedy longest-match split of each token by the subwords
        ``subword_nodes`` starts a segment (``_token_to_subwords``).  The escape sequence
        ``\\&undsc`` always matches; a character that starts no match is a segment alone."""
        table = self.table
        matches = np.zeros(table.num_nodes, dtype=bool)
        matches[subword_nodes] = True
        if self.escape_node >= 0:
            matches[self.escape_node] = True
        # longest[n]: the length of the longest matching prefix of node n (0: none), root first
        longest = np.zeros(table.num_nodes, dtype=np.int8)
        for length in range(1, table.num_levels + 1):
            level = table.level(length)
            inherited = longest[table.parent[level]] if length > 1 else 0
            longest[level] = np.where(matches[level], length, inherited)
        step = np.maximum(longest[table.deepest], 1)             # (N,) segment length starting at p
        is_start = np.zeros(len(step), dtype=bool)
        frontier = table.token_start[table.token_end > table.token_start]
        while frontier.size:                                     # one round per segment, all tokens
            is_start[frontier] = True
            following = frontier + step[frontier]
            frontier = following[following < table.position_end[frontier]]
        return is_start

    def _count(self, is_start: np.ndarray) -> np.ndarray:
        """(K,) int64: tfds's ``subword_counts``: for each substring, the summed count of the
        tokens in which it begins at a segment start.  Each segment start adds its token's count
        to its deepest node; a node's count is then its own plus its descendants'."""
        starts = np.flatnonzero(is_start)
        own = np.bincount(self.table.deepest[starts], weights=self.position_weight[starts],
                          minlength=self.table.num_nodes).astype(np.int64)
        return self.table.sum_to_ancestors(own)

    def _select(self, counts: np.ndarray, min_token_count: int) -> tuple[np.ndarray, list[str]]:
        """tfds's candidate pass: longest first, a substring whose count (less what its accepted
        extensions took) reaches ``min_token_count`` is accepted and its count is taken from every
        proper prefix; single-byte characters are never candidates.  Returns the accepted nodes
        and subwords, sorted as tfds sorts ``(count, subword)`` pairs, descending."""
        table = self.table
        taken = np.zeros(table.num_nodes, dtype=np.int64)          # subtracted by accepted extensions
        accepted_nodes, accepted_counts = [], []
        for length in range(min(table.num_levels, self.max_subword_length), 0, -1):
            level = table.level(length)
            remaining = counts[level] - taken[level]
            accepted = (remaining >= min_token_count) & table.multibyte[level]
            index = np.flatnonzero(accepted)
            accepted_nodes.append(index + level.start)
            accepted_counts.append(remaining[index])
            if length > 1:
                below = table.level(length - 1)
                passed_on = taken[level] + np.where(accepted, remaining, 0)
                taken[below] += np.bincount(table.parent[level] - below.start, weights=passed_on,
                                            minlength=below.stop - below.start).astype(np.int64)
        nodes = np.concatenate(accepted_nodes)
        pairs = sorted(zip(np.concatenate(accepted_counts).tolist(), table.strings(nodes), nodes.tolist()),
                       reverse=True)
        return np.array([n for _, _, n in pairs], dtype=np.int64), [s for _, s, _ in pairs]


def _utf8_bytes(code: np.ndarray, width: int) -> list[np.ndarray]:
    """The ``width`` UTF-8 bytes of each code point (all of that width), first byte first."""
    if width == 1:
        return [code]
    lead = {2: 0xC0, 3: 0xE0, 4: 0xF0}[width]
    return [(code >> (6 * (width - 1))) | lead] + [((code >> (6 * k)) & 0x3F) | 0x80
                                                    for k in range(width - 2, -1, -1)]


def build_from_corpus(corpus: Iterable[str | bytes], target_vocab_size: int, max_subword_length: int = 20,
                      progress=None) -> SubwordEncoder:
    """Fast ``SubwordEncoder.build_from_corpus``: the same encoder (see the module docstring)."""
    if target_vocab_size < NUM_BYTES + 2:
        raise ValueError(f"target_vocab_size must be >= {NUM_BYTES + 2}, got {target_vocab_size}")
    counts = tokenize(corpus).counts()
    if not counts:
        raise ValueError("cannot build a vocabulary from an empty corpus")
    return FastBuilder(counts, max_subword_length).build_from_corpus(target_vocab_size, progress)
