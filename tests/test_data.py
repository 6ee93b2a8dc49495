"""The IMDB subwords8k pipeline on the real archive, and its handling of bad input."""

import numpy as np
import pytest

from npembed.datasets import (DataError, SubwordEncoder, buffer_shuffle, load_imdb_subwords8k, pad_rows,
                              resolve_source)
from npembed.datasets.cache import Cache
from npembed.datasets.sources import fingerprint, tfds_order_key

from conftest import GOLDEN_VOCAB, make_aclimdb_archive, tiny_corpus

TUTORIAL_FIRST_SUBWORDS = ["the_", ", ", ". ", "a_", "and_", "of_", "to_", "s_", "is_", "br", "in_",
                           "I_", "that_", "this_", "it_", " /><", " />", "was_", "The_", "as_"]


# ----------------------------------------------------------------------------- real data
def test_split_sizes_and_class_balance(imdb):
    for split in (imdb.train, imdb.test):
        assert len(split) == 25_000
        assert np.count_nonzero(split.labels == 1) == 12_500
        assert split.offsets[-1] == split.ids.size
        assert split.ids.min() >= 1 and split.ids.max() < 8185


def test_vocabulary_is_the_tutorials(imdb):
    assert imdb.encoder.vocab_size == 8185
    assert imdb.encoder.subwords[:20] == TUTORIAL_FIRST_SUBWORDS


def test_built_vocabulary_equals_tfds_golden_file(imdb):
    if not GOLDEN_VOCAB.exists():
        pytest.skip("no golden vocabulary file beside the archive")
    assert imdb.encoder.subwords == SubwordEncoder.load_from_file(GOLDEN_VOCAB).subwords


def test_splits_are_in_tfds_stored_order(imdb):
    for split in (imdb.train, imdb.test):
        keys = [tfds_order_key(split.name, str(k)) for k in split.keys[:2000]]
        assert keys == sorted(keys)
        assert all(str(k).startswith(f"aclImdb/{split.name}/") for k in split.keys[:100])
    # labels follow the path
    assert all((k.split("/")[2] == "pos") == bool(l) for k, l in zip(imdb.test.keys[:500], imdb.test.labels[:500]))


def test_round_trip_of_real_reviews(imdb):
    encoder = imdb.encoder
    for index in range(0, 25_000, 2_500):
        ids = imdb.train.review(index).tolist()
        assert encoder.encode(encoder.decode(ids)) == ids


def test_encoder_round_trips_unusual_text(imdb):
    encoder = imdb.encoder
    for text in ["Hello world", "snake_case and x\\&undsc", "naïve café — 東京 🎬",
                 "trailing space ", "  leading", "", "a\u0085b", "<br /><br />The end."]:
        assert encoder.decode(encoder.encode(text)) == text


def test_escape_sequence_followed_by_a_space_keeps_tfds_quirk(imdb):
    """tfds drops the "skip the next space" flag for a literal \\&undsc, so decoding doubles the
    space after it; npembed reproduces tfds's ids, quirk included (parity_tests compare them)."""
    text = "a \\&undsc b"
    assert imdb.encoder.decode(imdb.encoder.encode(text)) == "a \\&undsc  b"


def test_batches_are_padded_to_the_longest_review(imdb):
    batches = imdb.train.batches(batch_size=10, shuffle_buffer=1000, seed=0)
    ids, labels = next(iter(batches))
    assert ids.shape[0] == 10 and labels.shape == (10,)
    lengths = np.count_nonzero(ids, axis=1)
    assert ids.shape[1] == lengths.max()
    order = batches.order(0)[:10]
    for row, review in enumerate(order):
        np.testing.assert_array_equal(ids[row, :lengths[row]], imdb.train.review(review))
        assert not ids[row, lengths[row]:].any()
    assert len(batches) == 2_500


def test_shuffle_is_deterministic_per_seed_and_reshuffles_each_epoch(imdb):
    a = imdb.train.batches(seed=5)
    b = imdb.train.batches(seed=5)
    first_a, first_b = next(iter(a)), next(iter(b))
    np.testing.assert_array_equal(first_a[0], first_b[0])
    second_a = next(iter(a))                     # epoch 1
    assert not np.array_equal(a.order(0), a.order(1))
    np.testing.assert_array_equal(second_a[1], imdb.train.labels[a.order(1)[:10]])
    assert not np.array_equal(imdb.train.batches(seed=6).order(0), a.order(0))
    assert sorted(a.order(3)) == list(range(25_000))


def test_first_batches_mix_classes(imdb):
    """tfds's stored order is already mixed, so the first batches hold both labels."""
    labels = [labels.mean() for _, labels in list(imdb.train.batches(seed=0).for_epoch(0))[:50]]
    assert 0.3 < np.mean(labels) < 0.7


def test_cached_load_is_identical_and_fast(imdb):
    import time
    start = time.perf_counter()
    again = load_imdb_subwords8k(str(imdb.source.path), progress=False)
    assert time.perf_counter() - start < 30
    np.testing.assert_array_equal(again.train.ids, imdb.train.ids)
    np.testing.assert_array_equal(again.test.offsets, imdb.test.offsets)


# ----------------------------------------------------------------------------- algorithms
def test_buffer_shuffle_is_a_permutation_with_bounded_displacement():
    rng = np.random.default_rng(0)
    order = buffer_shuffle(5000, 100, rng)
    assert sorted(order) == list(range(5000))
    # element i can't come out before position i - 100 + 1
    assert np.all(np.arange(5000)[order] <= np.arange(5000) + 100)
    assert np.all(np.argsort(order) >= np.arange(5000) - 100)
    np.testing.assert_array_equal(buffer_shuffle(10, 1, rng), np.arange(10))


def test_pad_rows():
    ids = np.array([5, 6, 7, 8, 9, 10])
    offsets = np.array([0, 3, 4, 6])
    np.testing.assert_array_equal(pad_rows(ids, offsets, np.array([1, 0, 2])),
                                  [[8, 0, 0], [5, 6, 7], [9, 10, 0]])


def test_drop_remainder_and_unshuffled_order(tmp_path):
    data = load_imdb_subwords8k(make_aclimdb_archive(tmp_path / "a.tar.gz", tiny_corpus()),
                                cache_dir=tmp_path / "cache", progress=False, workers=1)
    assert len(data.train.batches(batch_size=3, drop_remainder=True)) == 2
    assert [x.shape[0] for x, _ in data.train.batches(batch_size=3)] == [3, 3, 2]
    stored = np.concatenate([y for _, y in data.train.batches(batch_size=3, shuffle_buffer=None)])
    np.testing.assert_array_equal(stored, data.train.labels)


# ----------------------------------------------------------------------------- sources and errors
def test_archive_and_folder_give_the_same_data(tmp_path):
    corpus = tiny_corpus()
    archive = make_aclimdb_archive(tmp_path / "a.tar.gz", corpus)
    for name, data in corpus.items():
        (tmp_path / "ex" / "aclImdb" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ex" / "aclImdb" / name).write_bytes(data)
    a = load_imdb_subwords8k(archive, cache_dir=tmp_path / "c1", progress=False, workers=1)
    b = load_imdb_subwords8k(tmp_path / "ex", cache_dir=tmp_path / "c2", progress=False, workers=1)
    assert a.encoder.subwords == b.encoder.subwords
    np.testing.assert_array_equal(a.test.ids, b.test.ids)
    np.testing.assert_array_equal(a.test.keys, b.test.keys)
    assert resolve_source(tmp_path / "ex").path == tmp_path / "ex" / "aclImdb"


def test_env_var_chooses_the_data(tmp_path, monkeypatch):
    archive = make_aclimdb_archive(tmp_path / "a.tar.gz", tiny_corpus())
    monkeypatch.setenv("NPEMBED_DATA", str(archive))
    assert resolve_source(None).path == archive


def test_nothing_given_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("NPEMBED_DATA", raising=False)
    with pytest.raises(DataError, match=r"no IMDB data given(.|\n)*--data /path/to/aclImdb_v1.tar.gz(.|\n)*NPEMBED_DATA"):
        resolve_source(None)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(tmp_path / "nope.tar.gz")


def test_file_that_is_not_an_archive(tmp_path):
    (tmp_path / "reviews.txt").write_text("not an archive")
    with pytest.raises(DataError, match="is not a gzip archive"):
        resolve_source(tmp_path / "reviews.txt")


def test_truncated_gzip_leaves_no_cache(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "a.tar.gz", tiny_corpus())
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_imdb_subwords8k(tmp_path / "cut.tar.gz", cache_dir=tmp_path / "cache", progress=False)
    # Only the folder's lock file (locks.py; it holds no data) may remain.
    left = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.name != ".lock"]
    assert not left


def test_archive_without_the_layout(tmp_path):
    corpus = {k: v for k, v in tiny_corpus().items() if not k.startswith("test/neg")}
    with pytest.raises(DataError, match="has no test/neg reviews"):
        load_imdb_subwords8k(make_aclimdb_archive(tmp_path / "a.tar.gz", corpus),
                             cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(DataError, match="has no train/neg or pos reviews"):
        load_imdb_subwords8k(make_aclimdb_archive(tmp_path / "b.tar.gz", tiny_corpus(), top="other"),
                             cache_dir=tmp_path / "cache", progress=False)


def test_folder_without_the_layout(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match="missing train/neg, test/neg, test/pos"):
        resolve_source(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"   \n", r"review aclImdb/train/pos/0_9.txt is empty"),
    (b"caf\xe9 au lait", r"review aclImdb/train/pos/0_9.txt is not valid UTF-8 \(byte 3: b'\\xe9'\)"),
])
def test_bad_review_files(tmp_path, content, message):
    corpus = tiny_corpus()
    corpus["train/pos/0_9.txt"] = content
    with pytest.raises(DataError, match=message):
        load_imdb_subwords8k(make_aclimdb_archive(tmp_path / "a.tar.gz", corpus),
                             cache_dir=tmp_path / "cache", progress=False)


def test_corrupt_or_truncated_cache_is_rebuilt(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "a.tar.gz", tiny_corpus())
    first = load_imdb_subwords8k(archive, cache_dir=tmp_path / "cache", progress=False, workers=1)
    cache = Cache(tmp_path / "cache", fingerprint(resolve_source(archive)))
    npz = cache.path("train.npz")
    npz.write_bytes(npz.read_bytes()[:100])                    # cut short
    assert cache.load_split("train") is None
    (cache.path("test.npz.sha256")).unlink()                   # an unsealed file
    again = load_imdb_subwords8k(archive, cache_dir=tmp_path / "cache", progress=False, workers=1)
    np.testing.assert_array_equal(again.train.ids, first.train.ids)
    assert cache.load_split("train") is not None and cache.load_split("test") is not None
    assert not list(cache.folder.glob(".*tmp-*"))


def test_changed_input_gets_its_own_cache(tmp_path):
    corpus = tiny_corpus()
    a = make_aclimdb_archive(tmp_path / "a.tar.gz", corpus)
    corpus["train/pos/0_9.txt"] = b"Another wonderful review."
    b = make_aclimdb_archive(tmp_path / "b.tar.gz", corpus)
    assert fingerprint(resolve_source(a)) != fingerprint(resolve_source(b))
    data = load_imdb_subwords8k(b, cache_dir=tmp_path / "cache", progress=False, workers=1)
    assert data.encoder.decode(data.train.review(int(np.flatnonzero(data.train.keys == "aclImdb/train/pos/0_9.txt")[0]))) \
        == "Another wonderful review."


def test_vocab_file_option(tmp_path):
    archive = make_aclimdb_archive(tmp_path / "a.tar.gz", tiny_corpus())
    if not GOLDEN_VOCAB.exists():
        pytest.skip("no golden vocabulary")
    data = load_imdb_subwords8k(archive, cache_dir=tmp_path / "cache", vocab=GOLDEN_VOCAB, progress=False, workers=1)
    assert data.encoder.vocab_size == 8185
    with pytest.raises(DataError, match="vocabulary file .* does not exist"):
        load_imdb_subwords8k(archive, cache_dir=tmp_path / "cache", vocab=tmp_path / "none.subwords")


def test_subwords_file_format_round_trip(tmp_path):
    encoder = SubwordEncoder(["the_", "a\u0085b", "x_y", ", "])
    encoder.save_to_file(tmp_path / "v")
    again = SubwordEncoder.load_from_file(tmp_path / "v")
    assert again.subwords == encoder.subwords
    (tmp_path / "bad.subwords").write_text("hello\n")
    with pytest.raises(ValueError, match="not a tfds SubwordTextEncoder vocabulary file"):
        SubwordEncoder.load_from_file(tmp_path / "bad.subwords")


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="is not in this vocabulary"):
        SubwordEncoder(["the_"]).decode([1, 999])
