"""No traceback, no lost run: each defect of issue #11 as a test (the kill and race tests are in
test_faults.py).  Damaged run folders, mismatched vocabularies, bad options and locations: a
clear message naming the file or option, and an exit code of its kind."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faultdata import synthetic_archive
from npembed import cli, errors
from npembed.atomic import atomic_write_text, remove_stale_temporaries
from npembed.checkpoint import CheckpointError, read_npz
from npembed.config import TrainConfig
from npembed.locks import locked_folder
from npembed.training import train

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(epochs=2, steps_per_epoch=10, validation_steps=2)


@pytest.fixture(autouse=True)
def data_in_the_environment(monkeypatch):
    """The CLI finds the real data as a user's shell would: NPEMBED_DATA."""
    from conftest import real_data_path
    if real_data_path():
        monkeypatch.setenv("NPEMBED_DATA", real_data_path())


@pytest.fixture(scope="module")
def real_run(imdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "run"
    train(TrainConfig(**QUICK), out, data=imdb, progress=False)
    return out


@pytest.fixture
def damaged(real_run, tmp_path):
    """A copy of the finished run, to damage."""
    copy = tmp_path / "copy"
    shutil.copytree(real_run, copy)
    return copy


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- options are checked before anything is written
@pytest.mark.parametrize("option, value, message", [
    ("--learning-rate", "inf", "--learning-rate must be a finite number > 0, got inf"),
    ("--learning-rate", "-1", "--learning-rate must be a finite number > 0"),
    ("--seed", "-1", "--seed must be an integer between 0 and"),
    ("--embedding-dim", "100000000", "need about"),
    ("--batch-size", "0", "--batch-size must be an integer >= 1"),
    ("--hidden-units", "-2", "--hidden-units must be an integer >= 0"),
    ("--learning-rate", "1e39", "is inf in float32"),          # finite, but not in the weights' dtype
    ("--learning-rate", "1e-50", "is 0.0 in float32"),
])
def test_a_rejected_option_leaves_nothing_behind(tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", "--out", out, option, value, "--data", "unused")
    assert code == errors.USAGE and message in err
    assert not out.exists()


def test_resume_refuses_other_options_and_fewer_epochs(real_run, tmp_path, capsys):
    before = (real_run / "config.json").read_text()
    code, err = run_cli(capsys, "train", "--out", real_run, "--resume", "--seed", "3")
    assert code == errors.USAGE and "--seed 3 (the run has 0)" in err
    code, err = run_cli(capsys, "train", "--out", real_run, "--resume", "--epochs", "1")
    assert code == errors.USAGE and "--epochs 1 is fewer than the 2 epochs" in err
    assert (real_run / "config.json").read_text() == before


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_without_a_checkpoint_says_there_is_none(imdb, tmp_path):
    with pytest.raises(errors.DivergedError, match="no epoch finished, so there is no checkpoint"):
        train(TrainConfig(epochs=1, steps_per_epoch=50, validation_steps=1, learning_rate=1e30),
              tmp_path / "r", data=imdb, progress=False)


# ---------------------------------------------------------------- damaged run folders
def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 7] ^= 0xFF
    path.write_bytes(bytes(data))


def _nan(path):
    arrays = dict(np.load(path))
    arrays["dense__kernel"][0, 0] = np.nan
    np.savez(path.with_suffix(""), **arrays)


def _shuffle_vocab(path):
    lines = path.read_bytes().split(b"\n")
    head, body = lines[:2], lines[2:-1]
    np.random.default_rng(0).shuffle(body)
    path.write_bytes(b"\n".join(head + body) + b"\n")


DAMAGE = {
    "weights truncated": ("weights.npz", _truncate, "weights.npz is damaged"),
    "weights empty": ("weights.npz", lambda p: p.write_bytes(b""), "weights.npz is damaged"),
    "weights bit-flipped": ("weights.npz", _flip, "weights.npz"),
    "weights random": ("weights.npz", lambda p: p.write_bytes(os.urandom(5000)), "weights.npz is damaged"),
    "weights NaN": ("weights.npz", _nan, "holds NaN or infinite values"),
    "config bad JSON": ("config.json", lambda p: p.write_text("{"), "config.json is damaged"),
    "config empty": ("config.json", lambda p: p.write_text(""), "config.json is damaged"),
    "config bad option": ("config.json", lambda p: p.write_text(p.read_text().replace('"seed": 0', '"seed": -4')),
                          "config.json is damaged: --seed"),
    "vocab missing": ("vocab.subwords", lambda p: p.unlink(), "vocab.subwords is missing"),
    "vocab empty": ("vocab.subwords", lambda p: p.write_bytes(b""), "vocab.subwords is damaged"),
    "vocab truncated": ("vocab.subwords", lambda p: p.write_bytes(p.read_bytes()[:3000]), "vocab.subwords does not match"),
    "vocab shuffled": ("vocab.subwords", _shuffle_vocab, "vocab.subwords does not match"),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", [["predict", "good"], ["neighbors", "good"], ["grads", "--text", "fine", "--no-keras"]])
def test_a_damaged_run_folder_gives_a_message_naming_the_file(damaged, capsys, damage, command):
    name, spoil, message = DAMAGE[damage]
    spoil(damaged / name)
    code, err = run_cli(capsys, *command, "--run", damaged)
    assert code == errors.RUN, err
    assert message in err and str(damaged) in err


@pytest.mark.parametrize("command", [["evaluate"], ["plot-embeddings", "--top", "5"], ["train", "--resume"]])
def test_damaged_files_for_the_commands_that_load_data(damaged, capsys, command):
    _truncate(damaged / "weights.npz")
    _truncate(damaged / "checkpoint.npz")
    option = "--out" if command[0] == "train" else "--run"
    code, err = run_cli(capsys, *command, option, damaged)
    assert code == errors.RUN and "is damaged" in err


def test_damaged_checkpoint_variants(damaged):
    from npembed.checkpoint import load_checkpoint
    from npembed.config import build_model
    model = build_model(TrainConfig(), 8185)
    path = damaged / "checkpoint.npz"
    arrays = read_npz(path)
    arrays["v_0"] = -arrays["v_0"] - 1
    np.savez(damaged / "negative", **arrays)
    with pytest.raises(CheckpointError, match="second moment is negative"):
        load_checkpoint(damaged / "negative.npz", model)
    arrays = read_npz(path)
    arrays["state_json"] = np.frombuffer(b'{"format": 1', dtype=np.uint8)
    np.savez(damaged / "badjson", **arrays)
    with pytest.raises(CheckpointError, match="no readable progress record"):
        load_checkpoint(damaged / "badjson.npz", model)


# ---------------------------------------------------------------- a run used with other data
def test_a_run_of_another_vocabulary_is_refused(real_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NPEMBED_CACHE", str(tmp_path / "cache"))
    other = synthetic_archive(tmp_path / "other.tar.gz")
    for command in (["evaluate"], ["plot-embeddings", "--top", "5"], ["grads", "--index", "0", "--no-keras"]):
        code, err = run_cli(capsys, *command, "--run", real_run, "--data", other)
        assert code == errors.RUN and "trained on another vocabulary" in err, (command, err)
    code, err = run_cli(capsys, "train", "--out", real_run, "--resume", "--data", other)
    assert code == errors.RUN and "trained on another vocabulary" in err


# ---------------------------------------------------------------- locations
def test_out_that_is_a_file_or_under_one(real_run, capsys):
    for out in (real_run / "weights.npz", real_run / "weights.npz" / "sub"):
        code, err = run_cli(capsys, "train", "--out", out, "--data", "unused")
        assert code == errors.FILESYSTEM and "not a folder" in err


def test_cache_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("NPEMBED_CACHE", str(tmp_path / "file"))
    archive = synthetic_archive(tmp_path / "a.tar.gz")
    code, err = run_cli(capsys, "prepare", "--data", archive)
    assert code == errors.FILESYSTEM and "cache folder" in err and "lies under a file" in err


def test_unwritable_out(tmp_path, capsys):
    if os.geteuid() == 0:                       # root writes into read-only folders; not into /sys
        out = Path("/sys/npembed-test-run")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        out = folder / "run"
    code, err = run_cli(capsys, "train", "--out", out, "--data", "unused")
    assert code == errors.FILESYSTEM and f"cannot create run folder (--out) {out}" in err


def test_a_full_disk_is_a_message_not_a_traceback(real_run, capsys, monkeypatch):
    import npembed.plots

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "/somewhere/embedding_map.png")
    monkeypatch.setattr(npembed.plots, "plot_embedding_map", full)
    code, err = run_cli(capsys, "plot-embeddings", "--run", real_run, "--top", "5")
    assert code == errors.FILESYSTEM and "No space left on device" in err and "/somewhere" in err


# ---------------------------------------------------------------- smaller ones
def test_neighbors_k(real_run, capsys):
    assert cli.main(["neighbors", "--run", str(real_run), "great", "-k", "100000"]) == 0
    rows = capsys.readouterr().out.splitlines()
    listed = [r for r in rows if r[:1] in " -0123456789" and "'" in r]
    assert len(listed) == 7928 - 1                     # every other subword, no <pad>, no byte tokens
    assert all(np.isfinite(float(r.split()[0])) for r in listed)
    assert not any(r.split(None, 1)[1] in ("'great_'", "'<pad>'") for r in listed)
    for k in ("0", "-3"):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["neighbors", "--run", str(real_run), "great", "-k", k])
        assert exit_.value.code == 2


def test_predict_inputs(real_run, tmp_path, capsys, monkeypatch):
    for text in ("", "   ", "\t\n"):
        code, err = run_cli(capsys, "predict", "--run", real_run, text)
        assert code == errors.USAGE and "empty or only whitespace" in err
    code, err = run_cli(capsys, "predict", "--run", real_run, os.fsdecode(b"bad \xff bytes"))
    assert code == errors.USAGE and "not valid UTF-8 (byte 0xff at offset 4)" in err
    review = tmp_path / "long.txt"
    review.write_text("a wonderful film. " * 60000)             # about 1 MB
    assert cli.main(["predict", "--run", str(real_run), "--file", str(review)]) == 0
    assert str(review) in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "npembed.cli", "predict", "--run", str(real_run), "-"],
                          input="what a wonderful film", capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "<stdin>" in done.stdout


def test_plot_embeddings_top_and_out(real_run, tmp_path, capsys):
    for top in ("0", "2001", "1000000000"):           # a billion labels drew all 7,928 for 105 s
        with pytest.raises(SystemExit):
            cli.main(["plot-embeddings", "--run", str(real_run), "--top", top])
        assert "--top: must be from 2 to 2,000" in capsys.readouterr().err
    assert cli._printable("a\x85b") == "a\\x85b" and cli._printable("the_") == "the_"   # no missing glyph
    for out, message in ((tmp_path, "is a folder"), (tmp_path / "map.bogus", "unknown image format 'bogus'")):
        code, err = run_cli(capsys, "plot-embeddings", "--run", real_run, "--out", out)
        assert code == errors.USAGE and message in err


def test_bad_kernel_backend_in_the_environment(real_run, capsys, monkeypatch):
    monkeypatch.setenv("NPEMBED_KERNELS", "bogus")
    code, err = run_cli(capsys, "predict", "--run", real_run, "good")
    assert code == errors.USAGE and "NPEMBED_KERNELS='bogus'" in err


def test_vocab_file_must_end_in_subwords(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("### SubwordTextEncoder\n### Metadata: {}\n'a_'\n")
    code, err = run_cli(capsys, "prepare", "--data", synthetic_archive(tmp_path / "a.tar.gz"), "--vocab", vocab)
    assert code == errors.DATA and "ends in '.subwords'" in err


# ---------------------------------------------------------------- found by adversarial testing (issue #11, second pass)
def test_a_refused_start_in_an_existing_folder_leaves_no_lock_file(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    code, err = run_cli(capsys, "train", "--out", folder, "--epochs", "1")
    assert code == errors.RUN and "is not empty" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "train", "--out", empty, "--data", tmp_path / "nothing-here")
    assert code == errors.DATA and list(empty.iterdir()) == []


@pytest.mark.parametrize("argv", [["train", "--out", ""], ["prepare", "--cache-dir", ""],
                                  ["predict", "--run", " ", "good"], ["evaluate", "--run", ""]])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == errors.USAGE and "an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_removed_by_its_holder_is_not_locked_by_a_waiter(tmp_path):
    """A refused start removes the lock file it made while holding it; a process that opened
    that file meanwhile must not go on holding a lock no one else can see."""
    import threading
    got = {}

    def waiter():
        with locked_folder(tmp_path, wait=True):
            got["linked"] = (tmp_path / ".lock").exists()

    with locked_folder(tmp_path):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.3)                       # it has opened .lock and waits on it
        (tmp_path / ".lock").unlink()
    thread.join(10)
    assert got == {"linked": True}


def test_user_paths_that_cannot_be_expanded_are_messages(capsys, monkeypatch):
    for variable in ("NPEMBED_DATA", "NPEMBED_CACHE"):
        with monkeypatch.context() as patch:
            patch.setenv(variable, "~no-such-user-here/x")
            code, err = run_cli(capsys, "prepare")
        assert code == errors.USAGE and f"${variable}" in err.replace("data path", "$NPEMBED_DATA")
        assert "cannot expand '~'" in err


def test_neighbors_and_predict_edge_inputs(real_run, capsys):
    for word, message in (("", "has no subwords"), ("   ", "encodes only as raw bytes")):
        code, err = run_cli(capsys, "neighbors", "--run", real_run, word)   # without 'error:' before
        assert code == errors.USAGE and err.startswith("npembed neighbors: error: WORD") and message in err
    code, err = run_cli(capsys, "neighbors", "--run", real_run, os.fsdecode(b"\xff\xfe"))
    assert code == errors.USAGE and "not valid UTF-8" in err
    code, err = run_cli(capsys, "predict", "--run", real_run, "-", "-")
    assert code == errors.USAGE and "more than once" in err
    done = subprocess.run([sys.executable, "-m", "npembed.cli", "predict", "--run", str(real_run), "-"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=lambda: os.close(0))
    assert done.returncode == errors.USAGE and "standard input, which is closed" in done.stderr, done.stderr


def test_native_kernels_asked_for_but_not_buildable_is_a_message(real_run, tmp_path, capsys, monkeypatch):
    from npembed import kernels, native
    monkeypatch.setenv("NPEMBED_KERNELS", "native")
    monkeypatch.setattr(kernels, "_backend", None)
    monkeypatch.setattr(kernels, "_native", None)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setenv("NPEMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "/bin/false")
    code, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--epochs", "1")
    assert code == errors.USAGE and "NPEMBED_KERNELS=native" in err and "NPEMBED_KERNELS=numpy" in err
    assert not (tmp_path / "run").exists()


def test_config_json_of_wrong_types_is_damaged_not_a_crash(damaged, capsys):
    import json
    config = json.loads((damaged / "config.json").read_text())
    for key, value in (("adam_variant", ["x"]), ("epochs", "10"), ("embedding_dim", 16.0), ("mask", "yes")):
        (damaged / "config.json").write_text(json.dumps({**config, key: value}))
        code, err = run_cli(capsys, "predict", "--run", damaged, "good")
        assert code == errors.RUN and "config.json is damaged" in err, (key, err)


# ---------------------------------------------------------------- atomic writes and locks
def test_files_respect_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640


def test_the_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".checkpoint.npz.tmp-{dead.stdout.strip()}-x1"
    live = tmp_path / f".checkpoint.npz.tmp-{os.getppid()}-x2"
    other = tmp_path / f".config.json.tmp-{dead.stdout.strip()}-x3"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    atomic_write_text(tmp_path / "checkpoint.npz", "new")
    assert not stale.exists() and live.exists() and other.exists()
    remove_stale_temporaries(tmp_path, any_writer=True)
    assert not live.exists() and not other.exists()


def test_a_held_lock_is_refused_with_the_holder_and_freed_when_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from npembed.locks import locked_folder\n"
        f"with locked_folder({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(errors.BusyError, match=f"in use by pid {holder.pid}"):
        with locked_folder(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with locked_folder(tmp_path):                # the kernel released it
        pass


def test_a_damaged_native_build_is_rebuilt_not_loaded(tmp_path):
    env = {**os.environ, "NPEMBED_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    load = [sys.executable, "-c", "from npembed import native; native.load(); print('loaded')"]
    first = subprocess.run(load, env=env, capture_output=True, text=True)
    if first.returncode != 0:
        pytest.skip(f"no C compiler here: {first.stderr[-200:]}")
    (module,) = tmp_path.glob("native/*/_npembed_native*.so")
    original = module.read_bytes()
    for spoil in (lambda data: data[:4096] + bytes(b ^ 0xFF for b in data[4096:4098]) + data[4098:], lambda _: b""):
        module.write_bytes(spoil(original))
        again = subprocess.run(load, env=env, capture_output=True, text=True)
        assert again.returncode == 0 and "loaded" in again.stdout, again.stderr
        assert module.read_bytes() != spoil(original)


def test_an_interrupted_run_takes_back_its_own_temporary_files(tmp_path):
    """An interruption can land after an atomic write created its temporary file and before the
    code that removes it runs (seen once under CI: SIGTERM during a checkpoint write left
    `.checkpoint.npz.tmp-<pid>-*`).  The lock holder removes every temporary in its folder
    on the way out, its own (live pid) included."""
    from npembed.runfolder import training_lock
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with training_lock(out, resume=False):
            (out / f".checkpoint.npz.tmp-{os.getpid()}-abc").write_bytes(b"half")
            raise KeyboardInterrupt
    assert not out.exists() or not [p.name for p in out.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- second pass (issue 22)
def _memory_limited():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize("argv, stdin, what", [(["--file", "/dev/zero"], None, "--file /dev/zero"),
                                               (["-"], "yes", "standard input")])
def test_predict_reads_its_input_with_a_limit(real_run, argv, stdin, what):
    """`predict --file /dev/zero` read until the OOM killer came (24 GB): every input is read
    in blocks up to 16 MiB (all reviews together), past which it is a message."""
    command = [sys.executable, "-m", "npembed.cli", "predict", "--run", str(real_run), *argv]
    feed = subprocess.Popen(["yes"], stdout=subprocess.PIPE) if stdin else None
    try:
        done = subprocess.run(command, stdin=feed.stdout if feed else subprocess.DEVNULL, capture_output=True,
                              text=True, cwd=ROOT, timeout=60, preexec_fn=_memory_limited)
    finally:
        if feed:
            feed.kill()
            feed.wait()
    assert done.returncode == errors.USAGE, done.stderr
    assert f"{what} holds more than 16 MiB of review text" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_limit_counts_every_review_of_the_call(real_run, tmp_path, capsys):
    half = tmp_path / "half.txt"
    half.write_bytes(b"fine. " * ((9 << 20) // 6))
    code, err = run_cli(capsys, "predict", "--run", real_run, "--file", half, "--file", half)
    assert code == errors.USAGE and f"--file {half} holds more than 16 MiB" in err


def _stopped_before_the_run_starts(monkeypatch, failure):
    """train fails where the n-gram model caches its n-grams: after the data, before config.json."""
    from npembed.models import ngrams

    def fail(*args, **kwargs):
        raise failure
    monkeypatch.setattr(ngrams, "splits", fail)


@pytest.mark.parametrize("failure", [cli.Terminated(15), OSError(28, "No space left on device", "/cache/x.npz")])
def test_a_run_stopped_before_its_config_is_not_advised_to_resume(imdb, tmp_path, capsys, monkeypatch, failure):
    """Issue 22 item 8: `--resume` was advised for a folder the failed start had just removed."""
    _stopped_before_the_run_starts(monkeypatch, failure)
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", "--out", out, "--model", "ngrams", "--epochs", "1")
    assert code in (128 + 15, errors.FILESYSTEM), err
    assert not out.exists() and "--resume" not in err
    assert "run the same command again" in err or "run the command again" in err


def test_a_full_disk_names_the_file_it_could_not_write(imdb, tmp_path, capsys, monkeypatch):
    """docs/reliability.md promised it; ENOSPC from write or fsync carries no file name."""
    import npembed.atomic

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(npembed.atomic.os, "fsync", full)
    target = tmp_path / "config.json"
    with pytest.raises(OSError) as raised:
        atomic_write_text(target, "{}")
    assert raised.value.errno == 28 and raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []                  # no temporary left
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", "--out", out, "--epochs", "1")
    assert code == errors.FILESYSTEM and f"could not read or write {out}{os.sep}" in err, err
    assert "No space left on device" in err and "--resume" not in err


def test_names_near_the_255_byte_limit_are_written(tmp_path):
    """`.<name>.tmp-<pid>-<random><suffix>` passed NAME_MAX for a target name of ~230 bytes."""
    from npembed.atomic import atomic_write_with
    for name in ("x" * 251 + ".png", "é" * 120 + ".tsv"):
        atomic_write_with(tmp_path / name, lambda tmp: Path(tmp).write_bytes(b"data"))
        assert (tmp_path / name).read_bytes() == b"data"
    atomic_write_text(tmp_path / ("y" * 255), "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 251 + ".png", "é" * 120 + ".tsv", "y" * 255])
    dead = tmp_path / (".%s.tmp-999999999-abc" % npembed_atomic_stem("y" * 255))
    dead.write_bytes(b"half")
    atomic_write_text(tmp_path / ("y" * 255), "again")
    assert not dead.exists()


def npembed_atomic_stem(name):
    from npembed.atomic import _temporary_stem
    return _temporary_stem(name)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """A cache built from the small synthetic archive: (archive, cache folder, data)."""
    from npembed.datasets import load_imdb_subwords8k
    folder = tmp_path_factory.mktemp("tampered")
    archive = synthetic_archive(folder / "synthetic.tar.gz")
    data = load_imdb_subwords8k(archive, cache_dir=folder / "cache", progress=False)
    return archive, folder / "cache", data


def _cut(arrays):
    half = arrays["labels"].shape[0] // 2
    end = arrays["offsets"][half]
    return dict(arrays, ids=arrays["ids"][:end], offsets=arrays["offsets"][:half + 1],
                labels=arrays["labels"][:half], keys=arrays["keys"][:half])


def _edit(**change):
    def edit(arrays):
        arrays = {k: v.copy() for k, v in arrays.items()}
        for name, how in change.items():
            arrays[name] = how(arrays[name])
        return arrays
    return edit


def _set(index, value):
    def put(array):
        array[index] = value
        return array
    return put


TAMPERED = {
    "a cut-down split": (_cut, "reviews, not"),
    "offsets not monotone": (_edit(offsets=lambda o: np.concatenate([o[:1], o[2:3], o[1:2], o[3:]])), "offsets"),
    "offsets past the ids": (_edit(offsets=_set(-1, 10 ** 9)), "offsets"),
    "an id past the vocabulary": (_edit(ids=_set(3, 10 ** 6)), "ids outside"),
    "a zero id": (_edit(ids=_set(0, 0)), "ids outside"),
    "a label 2": (_edit(labels=_set(0, 2)), "labels other than 0 and 1"),
    "a flipped label": (_edit(labels=lambda labels: 1 - labels), "disagree with the reviews' folders"),
    "a review twice": (lambda arrays: _edit(keys=_set(1, arrays["keys"][0]),
                                            labels=_set(1, arrays["labels"][0]))(arrays), "more than once"),
    "a label missing": (_edit(labels=lambda labels: labels[:-1]), "disagree in shape"),
    "float ids": (_edit(ids=lambda ids: ids.astype(np.float32)), "wrong types"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_cache_with_recomputed_checksums_is_refused(small_cache, tmp_path, case):
    """Also found by issue 22: a split edited (its .sha256 recomputed) gave tracebacks, or was
    trained on silently (cut down). The cache is checked for consistency on every load."""
    from npembed.datasets import load_imdb_subwords8k
    from npembed.datasets.cache import Cache
    from npembed.datasets.sources import DataError
    archive, cache_dir, _ = small_cache
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    (folder,) = (copy / "imdb_subwords8k").iterdir()
    tamper, message = TAMPERED[case]
    with np.load(folder / "train.npz") as stored:
        arrays = dict(stored)
    arrays = tamper(arrays)
    with open(folder / "train.npz", "wb") as handle:
        np.savez(handle, **arrays)
    cache = Cache.__new__(Cache)
    cache.folder = folder
    cache.seal("train.npz")                                 # the checksum recomputed
    with pytest.raises(DataError) as refused:
        load_imdb_subwords8k(archive, cache_dir=copy, progress=False)
    assert message in str(refused.value) and f"Delete the folder {folder}" in str(refused.value)


def test_a_known_archive_has_its_review_counts_checked():
    from npembed.datasets.batching import EncodedSplit
    from npembed.datasets.cache import KNOWN_INPUTS, Cache, split_problem
    split = EncodedSplit("train", np.array([1, 2, 3]), np.array([0, 1, 3]), np.array([0, 1], np.int8),
                         np.array(["aclImdb/train/neg/0_1.txt", "aclImdb/train/pos/0_9.txt"]))
    assert split_problem(split, vocab_size=4) is None
    assert split_problem(split, vocab_size=4, expected_reviews=25_000) == "2 reviews, not 25,000"
    assert Cache("/tmp/unused", next(iter(KNOWN_INPUTS))).expected_reviews == 25_000


def test_a_tampered_ngram_cache_is_rebuilt_not_used(small_cache):
    from npembed.datasets.ngrams import NgramCache, load_ngram_split, ngram_split
    _, _, data = small_cache
    vocab = data.encoder.vocab_size
    first = load_ngram_split(data.train, 2, 1000, vocab, data.cache_folder)
    cache = NgramCache(data.cache_folder, 2, 1000)
    with np.load(cache.path("train.npz")) as stored:
        arrays = dict(stored)
    arrays["ids"][5] = vocab + 1000 + 7                     # a row past the table
    with open(cache.path("train.npz"), "wb") as handle:
        np.savez(handle, **arrays)
    cache.seal("train.npz")
    again = load_ngram_split(data.train, 2, 1000, vocab, data.cache_folder)
    expected = ngram_split(data.train, 2, 1000, vocab)
    assert np.array_equal(again.ids, expected.ids) and np.array_equal(first.ids, expected.ids)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_terminal_that_takes_only_ascii_gets_escapes_not_tracebacks(real_run, tmp_path, encoding):
    """Also found by issue 22: PYTHONIOENCODING=ascii gave UnicodeEncodeError tracebacks for
    every subword, review or file name outside ASCII (prepare's first subwords too, once a
    vocabulary holds one)."""
    review = tmp_path / "critique_été.txt"
    review.write_text("un film très réussi ☺", encoding="utf-8")
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    for argv in (["predict", "--run", real_run, "café ☺ great", "--file", review],
                 ["neighbors", "--run", real_run, "café", "-k", "8000"],
                 ["grads", "--run", real_run, "--text", "café ☺", "--no-keras"]):
        done = subprocess.run([sys.executable, "-m", "npembed.cli", *map(str, argv)], env=env, cwd=ROOT,
                              capture_output=True, text=True, encoding=encoding, errors="replace", timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "caf\\xe9" in subprocess.run([sys.executable, "-m", "npembed.cli", "predict", "--run", str(real_run),
                                         "café"], env={**env, "PYTHONIOENCODING": "ascii"}, cwd=ROOT,
                                        capture_output=True, text=True).stdout


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and sparse files are POSIX")
def test_data_and_vocab_that_are_not_regular_files_are_refused_at_once(tmp_path, capsys):
    """Found by the second pass: `--data FIFO` blocked for ever reading its magic bytes;
    `--vocab /dev/zero` (or a folder, a FIFO) was said not to exist; a 3 GB sparse `--vocab`
    was read whole (57 s) after the reviews were read."""
    fifo = tmp_path / "fifo.subwords"
    os.mkfifo(fifo)
    (tmp_path / "folder.subwords").mkdir()
    sparse = tmp_path / "sparse.subwords"
    with open(sparse, "wb") as handle:
        handle.truncate(3 << 30)
    done = subprocess.run([sys.executable, "-m", "npembed.cli", "prepare", "--data", str(fifo), "--cache-dir",
                           str(tmp_path / "cache")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == errors.DATA and "is not a regular file or a folder" in done.stderr
    for vocab in ("/dev/zero", fifo, tmp_path / "folder.subwords"):
        code, err = run_cli(capsys, "prepare", "--vocab", vocab, "--cache-dir", tmp_path / "cache")
        assert code == errors.DATA and f"--vocab {vocab} is not a regular file" in err, err
    code, err = run_cli(capsys, "prepare", "--vocab", sparse, "--cache-dir", tmp_path / "cache")
    assert code == errors.DATA and "holds more than 64 MiB: not a vocabulary file" in err
    assert not (tmp_path / "cache").exists()                # refused before any work


def test_a_huge_vocabulary_in_a_run_folder_is_damaged_not_read(damaged, capsys):
    with open(damaged / "vocab.subwords", "r+b") as handle:
        handle.truncate(3 << 30)
    code, err = run_cli(capsys, "predict", "--run", damaged, "good")
    assert code == errors.RUN and "vocab.subwords is damaged" in err and "64 MiB" in err


def test_an_out_name_over_255_bytes_is_a_message(tmp_path, capsys):
    """`train --out <256 bytes>` ended in two tracebacks (is_dir and is_file raise ENAMETOOLONG)."""
    out = tmp_path / ("L" * 256)
    code, err = run_cli(capsys, "train", "--out", out, "--epochs", "1")
    assert code == errors.FILESYSTEM and "File name too long" in err and "--resume" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_reviews_that_cannot_be_reviews_are_refused_not_read(tmp_path):
    """An archive member or folder file of gigabytes (a gzip bomb decompresses to them) was read
    whole into memory; a FIFO named like a review blocked `prepare` for ever."""
    from conftest import make_aclimdb_archive, tiny_corpus
    from npembed.datasets import load_imdb_subwords8k
    from npembed.datasets.sources import DataError
    corpus = tiny_corpus()
    corpus["train/pos/99_9.txt"] = b"good " * (1 << 19)                    # 2.5 MB
    bomb = make_aclimdb_archive(tmp_path / "bomb.tar.gz", corpus)
    with pytest.raises(DataError, match="99_9.txt holds 2,621,440 bytes, not a review"):
        load_imdb_subwords8k(bomb, cache_dir=tmp_path / "cache", progress=False)
    folder = tmp_path / "aclImdb"
    for name, text in tiny_corpus().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text)
    os.mkfifo(folder / "test" / "neg" / "98_1.txt")
    done = subprocess.run([sys.executable, "-m", "npembed.cli", "prepare", "--data", str(folder), "--cache-dir",
                           str(tmp_path / "cache")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == errors.DATA and "98_1.txt is not a regular file" in done.stderr


def test_predict_pad_shows_what_padding_does_without_a_mask(real_run, capsys):
    """The RNN tutorial's sample_predict(pad=True): an unmasked model's average includes the
    padding, so the padded review gets another probability; a review already as long as N gets
    no padding and the same one."""
    assert cli.main(["predict", "--run", str(real_run), "--pad", "64", "a wonderful, moving film"]) == 0
    plain, padded = capsys.readouterr().out.splitlines()
    added = re.search(r"\(\+(\d+) padding ids: 64 positions\)$", padded)
    assert added and 0 < int(added.group(1)) < 64
    assert plain.split()[0] != padded.split()[0]
    assert cli.main(["predict", "--run", str(real_run), "--pad", "1", "a wonderful, moving film"]) == 0
    plain, padded = capsys.readouterr().out.splitlines()
    assert "(+0 padding ids" in padded and plain.split()[0] == padded.split()[0]
