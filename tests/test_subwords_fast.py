"""The fast vocabulary builder and encoder (subwords_fast.py) against the readable reference
(subwords.py, itself tested equal to tfds in parity_tests/test_tfds_*.py): the same subwords in
the same order, the same token counts, the same ids, on corpora made to hit the corner cases,
and on the real archive the golden ``subwords8k`` file byte for byte."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from npembed.datasets import subwords_fast
from npembed.datasets.subwords import (UNDERSCORE_REPLACEMENT, SubwordEncoder, _prepare_tokens_for_encode,
                                       build_from_token_counts,
                                       _token_counts, _Tokenizer)

from conftest import GOLDEN_VOCAB, real_data_path

# Corner cases: multibyte characters (a single one is a candidate, unlike an ASCII one), "_"
# inside words (escaped to \&undsc, which always matches), the escape sequence written in the
# text itself (the reference tokenizer's reserved token), a word before a lone space or before
# two, a space before punctuation, tokens longer than max_subword_length, newlines and tabs.
CORNER_TEXTS = [
    "The café served crème brûlée; the café's crème was great. Café  au lait!",
    "snake_case and snake_case_names, __init__ and _private_ things_",
    "a literal \\&undsc escape, and \\&undsc again; x\\&undscy",
    "Supercalifragilisticexpialidocious is supercalifragilisticexpialidocious indeed",
    "日本語の映画 日本語 映画 映画!!! 🎬🎬 🎬 great great",
    "line one\nline two\tand tab. The end . the end .  The end",
    "  leading and trailing spaces stay as tfds leaves them  ",
    "the the the the the a a a an an of of to to",
]


def random_corpus(seed: int, texts: int = 60) -> list[str]:
    """Texts of random words over a small alphabet, so that subwords repeat and collide."""
    rng = np.random.default_rng(seed)
    letters = list("abcdeé_") + ["日", "\\&undsc"]
    separators = [" ", " ", " ", ", ", ". ", "  ", "!", "\n", "-"]
    out = []
    for _ in range(texts):
        words = ["".join(rng.choice(letters, rng.integers(1, 9))) for _ in range(rng.integers(1, 30))]
        out.append("".join(w + rng.choice(separators) for w in words).strip())
    return out


CORPORA = {"corners": CORNER_TEXTS * 3, **{f"random{seed}": random_corpus(seed) for seed in range(4)}}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_token_counts_equal_the_reference(name):
    corpus = CORPORA[name]
    assert subwords_fast.token_counts(corpus) == dict(_token_counts(corpus))
    assert subwords_fast.token_counts([t.encode() for t in corpus]) == dict(_token_counts(corpus))


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("max_subword_length", [3, 20])
def test_every_min_count_gives_the_reference_subwords(name, max_subword_length):
    counts = _token_counts(CORPORA[name])
    fast = subwords_fast.FastBuilder(counts, max_subword_length)
    for min_count in (1, 2, 3, 5, 8, 20):
        expected = build_from_token_counts(counts, min_count, max_subword_length).subwords
        assert fast.build(min_count) == expected, min_count


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("max_subword_length", [3, 20])
def test_token_ids_equal_the_reference_encoders(name, max_subword_length):
    """All tokens' ids at once (the split, subword ids, the escape, UTF-8 byte fallbacks)."""
    counts = _token_counts(CORPORA[name])
    fast = subwords_fast.FastBuilder(counts, max_subword_length)
    for min_count in (1, 2, 3, 5, 20):
        nodes, subwords = fast._build(min_count)
        encoder = SubwordEncoder(subwords)
        assert fast.token_ids(nodes) == [encoder._token_to_ids(token) for token in counts], min_count


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("target", [260, 300, 400])
def test_build_from_corpus_equals_the_reference(name, target):
    corpus = CORPORA[name]
    expected = SubwordEncoder.build_from_corpus(corpus, target)
    built = subwords_fast.build_from_corpus(corpus, target)
    assert built.subwords == expected.subwords
    assert built.vocab_size == expected.vocab_size


def test_the_search_visits_the_same_candidates():
    corpus, seen = CORPORA["random1"], ([], [])
    SubwordEncoder.build_from_corpus(corpus, 300, progress=seen[0].append)
    subwords_fast.build_from_corpus(corpus, 300, progress=seen[1].append)
    assert len(seen[0]) > 2 and seen[0] == seen[1]


# The escape sequence in the text: the reference tokenizer splits it out as a reserved token,
# written "\\&" "undsc", and "undsc_" before a lone space (which stays a token too: tfds's quirk).
ESCAPE_TEXTS = ["", " ", "  ", "a ", "a  ", "x", "\\&undsc", "\\&undsc \\&undsc", "a \\&undsc b",
                "\\&undsc\\&undsc", "x\\&undsc ", "\\&undsc  y", "\\&\\&undsc", "\\\\&undsc",
                "\\&undsc_x \\&undsc ", "\\&undsc \\&", "a_ b _ _", "word_ ", "\\&unds", "\\&undscx y"]
# Characters whose class needs Unicode's tables: a line separator and U+0085 (non-word), digits
# and numerics of other scripts, superscripts, letters outside the BMP (word).
UNICODE_TEXTS = ["\U0001F3AC\u0085x\u2028 y", "\u0663\u0664 \u00bd \u216b x\u00b2", "\U00010400\U00010401 b",
                 "a" * 100 + " " + "\u00e9" * 50, "tab\there\r\nnew", "\u00a0nbsp\u00a0 x"]


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_tokenize_gives_the_reference_tokens(name, kernel_backend):
    """C's tokenizer (and the regular-expression one) against the reference tokenizer, text by
    text, and the two fast ones against each other: the same tokens numbered in the same order."""
    texts = CORPORA[name] + ESCAPE_TEXTS + UNICODE_TEXTS
    reference = _Tokenizer({UNDERSCORE_REPLACEMENT})
    tokenized = subwords_fast.tokenize(texts)
    for row, text in enumerate(texts):
        found = tokenized.token_index[tokenized.offsets[row]:tokenized.offsets[row + 1]]
        assert [tokenized.tokens[i] for i in found] == _prepare_tokens_for_encode(reference.tokenize(text)), text
    python = subwords_fast.tokenize_python(texts)
    assert tokenized.tokens == python.tokens
    np.testing.assert_array_equal(tokenized.token_index, python.token_index)
    np.testing.assert_array_equal(tokenized.offsets, python.offsets)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_encode_texts_equals_encode_on_both_backends(name, kernel_backend):
    corpus = CORPORA[name]
    encoder = SubwordEncoder.build_from_corpus(corpus[: len(corpus) // 2], 300)
    texts = corpus + ESCAPE_TEXTS + UNICODE_TEXTS + [t.encode() for t in corpus[:5]]
    ids, offsets = subwords_fast.encode_texts(encoder, texts)
    assert ids.dtype == np.int32 and offsets.dtype == np.int64 and offsets.shape == (len(texts) + 1,)
    for row, text in enumerate(texts):
        assert ids[offsets[row]:offsets[row + 1]].tolist() == encoder.encode(text), text


def test_native_token_ids_follow_the_reference_split(native_backend):
    """Subwords longer than the escape sequence, the escape itself listed as a subword (its byte
    id wins), a subword listed twice (the last id wins, as in the encoder's dict), "_" alone
    (a space's byte) and characters no subword spells (their UTF-8 bytes)."""
    encoder = SubwordEncoder(["abcdefghij_", "abc", "ab", "\\&undsc", "é", "日本", "ab", "x_", "zz"])
    tokens = ["abcdefghij_", "abcdefghijk", "abab\\&undscab", "_", "é日本語🎬", "q", "x_", "zzz_", ""]
    ids, id_offsets = subwords_fast.token_ids_native(encoder, tokens)
    for t, token in enumerate(tokens):
        assert ids[id_offsets[t]:id_offsets[t + 1]].tolist() == [i + 1 for i in encoder._token_to_ids(token)], token


def test_word_characters_are_pythons_word_characters():
    """The table C classifies characters by is built from Python's own \\w, for every code point."""
    word = subwords_fast._word_table(np.ones(0x110000, dtype=bool))
    expected = np.array([c == "_" or c.isalnum() for c in map(chr, range(0x110000))])
    np.testing.assert_array_equal(word.astype(bool), expected)


def test_text_that_is_not_utf8_fails_as_the_reference_does(kernel_backend):
    encoder = SubwordEncoder(["ab"])
    with pytest.raises(UnicodeDecodeError):
        subwords_fast.encode_texts(encoder, [b"fine", b"bad \xff byte"])


def test_real_reviews_encode_to_the_cached_ids(imdb, native_backend):
    """Every one of the 50,000 reviews, encoded by C, against the cache (written by whichever path
    built it), and a sample against the reference encoder."""
    from npembed.datasets.sources import read_reviews
    reviews = read_reviews(imdb.source)
    for split in (imdb.train, imdb.test):
        texts = [r.text for r in reviews[split.name]]
        ids, offsets = subwords_fast.encode_texts(SubwordEncoder(imdb.encoder.subwords), texts)
        np.testing.assert_array_equal(ids, split.ids)
        np.testing.assert_array_equal(offsets, split.offsets)
        for row in range(0, len(texts), 97):
            assert ids[offsets[row]:offsets[row + 1]].tolist() == imdb.encoder.encode(texts[row])


def test_encode_texts_with_mixed_subwords_falls_back_to_the_reference():
    """A vocabulary holding a letter/punctuation subword makes the tokenizer split it out first,
    which the one-regex tokenizer does not do: such an encoder is encoded text by text."""
    encoder = SubwordEncoder(["don't_", "do", "n", "'t_", "the_"])
    texts = ["I don't know, don't ask", "the don'ts"]
    ids, offsets = subwords_fast.encode_texts(encoder, texts)
    for row, text in enumerate(texts):
        assert ids[offsets[row]:offsets[row + 1]].tolist() == encoder.encode(text)


def test_substring_table_numbers_each_distinct_substring_once():
    table = subwords_fast.SubstringTable(["abab", "ba", "b"], max_length=3)
    # distinct substrings: a b | ab ba | aba bab  -> 2 + 2 + 2 nodes, numbered length by length
    assert table.level_start == [0, 2, 4, 6]
    assert table.strings(np.arange(table.num_nodes)) == ["a", "b", "ab", "ba", "aba", "bab"]
    assert [table.find(s) for s in ("ab", "bab", "abab", "c")] == [2, 5, -1, -1]
    assert table.parent.tolist() == [-1, -1, 0, 1, 2, 3]
    # deepest node per position: "aba" "bab" "ab" "b" | "ba" "a" | "b"
    assert table.strings(table.deepest) == ["aba", "bab", "ab", "b", "ba", "a", "b"]


def test_real_vocabulary_is_the_golden_file_byte_for_byte(imdb):
    built = imdb.cache_folder / "vocab.subwords"
    assert built.read_bytes() == GOLDEN_VOCAB.read_bytes()


@pytest.mark.slow
def test_real_corpus_one_min_count_equals_the_reference(imdb):
    """The reference's 4 iterations at the min_count the search ends on (about 10 s)."""
    from npembed.datasets.sources import read_reviews
    texts = [r.text for r in read_reviews(imdb.source)["train"]]
    counts = subwords_fast.token_counts(texts)
    assert counts == dict(_token_counts(texts))
    expected = build_from_token_counts(counts, 186, 20).subwords
    assert subwords_fast.FastBuilder(counts).build(186) == expected == imdb.encoder.subwords


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM])
def test_killed_prepare_leaves_no_process(tmp_path, signal_number):
    """``npembed prepare`` killed while its helper process cuts the test reviews into tokens
    leaves nothing running: the helper dies with it (before issue #14 the encoding pool's
    workers outlived a killed prepare, blocked on a pipe).  Runs prepare in a new session, kills
    it once it builds the vocabulary, then looks for any process of that session."""
    path = real_data_path()
    if not os.path.isdir("/proc"):
        pytest.skip("looks for processes in /proc (Linux)")
    if path is None:
        pytest.skip("no IMDB data: set NPEMBED_DATA or place ../shared/data/aclImdb_labeled.tar.gz")
    env = {**os.environ, "NPEMBED_CACHE": str(tmp_path / "cache")}
    prepare = subprocess.Popen([sys.executable, "-m", "npembed.cli", "prepare", "--data", path],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                               start_new_session=True)
    try:
        for line in prepare.stderr:
            if "building the subwords8k vocabulary" in line:
                break
        else:
            pytest.fail(f"prepare ended (rc {prepare.wait()}) before it built the vocabulary")
        running = _session_processes(prepare.pid)
        os.kill(prepare.pid, signal_number)
        prepare.wait()
    finally:
        if prepare.poll() is None:
            prepare.kill()
            prepare.wait()
    assert len(running) == 2 and prepare.pid in running      # prepare and its helper
    deadline = time.monotonic() + 1                      # the helper takes seconds to finish its work
    while _session_processes(prepare.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_processes(prepare.pid) == []


def test_background_returns_the_result_or_raises():
    from npembed.datasets import background
    assert background.start(sorted, [3, 1, 2]).result() == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        background.start(divmod, 1, 0).result()


def _session_processes(session_id: int) -> list[int]:
    """The ids of the live (not zombie) processes in session ``session_id`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":       # fields: state ppid pgrp session
            found.append(int(entry))
    return found
