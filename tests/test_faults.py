"""The fault suite: real `npembed train` processes killed with SIGKILL at random points, and two
trainers racing for one run folder.  After every kill: nothing in the run folder is corrupt, no
process of the killed one is left, and `--resume` ends bit-identical to a run never interrupted.

Seeded and bounded (a few trials, a few kills each, epochs of 20 steps on a small synthetic
archive), so that it takes well under a minute on two cores.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faultdata import synthetic_archive
from npembed.checkpoint import read_npz

TRIALS, KILLS_PER_TRIAL, SEED = 4, 3, 20240611
OPTIONS = ["--epochs", "3", "--steps-per-epoch", "20", "--validation-steps", "2", "--batch-size", "10"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    archive = synthetic_archive(folder / "synthetic.tar.gz")
    environment = {**os.environ, "NPEMBED_DATA": str(archive), "NPEMBED_CACHE": str(folder / "cache"),
                   "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "npembed.cli", "prepare"], env=environment, check=True,
                   capture_output=True)
    return environment


def start(env, *args) -> subprocess.Popen:
    # A session of its own, so that "no process left" can be checked by its process group.
    return subprocess.Popen([sys.executable, "-m", "npembed.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def processes_in_group(group: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def assert_nothing_corrupt(out: Path) -> None:
    """Every file present reads back whole (atomic writes: old or new, never half)."""
    if (out / "config.json").exists():
        json.loads((out / "config.json").read_text())
    for name in ("checkpoint.npz", "weights.npz"):
        if (out / name).exists():
            read_npz(out / name)


def weights_and_history(out: Path):
    with np.load(out / "weights.npz") as data:
        weights = {key: data[key] for key in data.files}
    return weights, json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    begin = time.perf_counter()
    code, err = finish(start(env, "train", "--out", str(out), *OPTIONS))
    assert code == 0, err
    return out, time.perf_counter() - begin


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")
def test_kills_at_random_points_lose_nothing_and_resume_bit_identical(env, reference, tmp_path):
    ref, duration = reference
    rng = np.random.default_rng(SEED)
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        for _ in range(KILLS_PER_TRIAL):
            resume = ["--resume"] if (out / "config.json").exists() else []
            process = start(env, "train", "--out", str(out), *OPTIONS, *resume)
            time.sleep(rng.uniform(0.05, duration))
            process.send_signal(signal.SIGKILL)
            finish(process)
            deadline = time.monotonic() + 5
            while processes_in_group(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert processes_in_group(process.pid) == [], "a process outlived the killed trainer"
            assert_nothing_corrupt(out)
        resume = ["--resume"] if (out / "config.json").exists() else []
        code, err = finish(start(env, "train", "--out", str(out), *OPTIONS, *resume))
        assert code == 0, err
        assert "Traceback" not in err
        weights, history = weights_and_history(out)
        ref_weights, ref_history = weights_and_history(ref)
        assert history == ref_history
        assert weights.keys() == ref_weights.keys()
        for key in weights:
            np.testing.assert_array_equal(weights[key], ref_weights[key], err_msg=f"trial {trial}: {key}")
        assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], "temporary files left behind"


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_second_trainer_into_the_same_folder_is_refused_and_names_the_first(env, tmp_path):
    out = tmp_path / "contested"
    first = start(env, "train", "--out", str(out), *OPTIONS, "--seed", "0")
    deadline = time.monotonic() + 30
    while f'"pid": {first.pid}' not in _read(out / ".lock") and time.monotonic() < deadline:
        time.sleep(0.01)
    second = start(env, "train", "--out", str(out), *OPTIONS, "--seed", "1")
    code, err = finish(second)
    assert code == 5, err
    assert f"in use by pid {first.pid}" in err and "Traceback" not in err
    code, err = finish(first)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    with np.load(out / "checkpoint.npz") as checkpoint:
        assert json.loads(checkpoint["state_json"].tobytes())["epoch"] == 3


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_kill_before_config_json_leaves_a_folder_that_trains(env, tmp_path):
    """A start killed while writing config.json leaves temporaries (and the vocabulary): a new
    `train` into the folder must work, not point at --resume, which points back."""
    out = tmp_path / "early-kill"
    out.mkdir()
    (out / f".config.json.tmp-{2 ** 22 + 12345}-abcdef").write_text("{")
    (out / ".checkpoint.npz.tmp-old0name").write_bytes(b"PK")          # older npembed's naming
    code, err = finish(start(env, "train", "--out", str(out), *OPTIONS))
    assert code == 0, err
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and SIGHUP are POSIX")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_run_with_a_message_and_it_resumes(env, tmp_path, signum):
    """`kill PID` (a scheduler, a closed terminal) ends train as Ctrl-C does: a message naming
    the way back, exit 128 + signal, the lock released, no temporary file, no process left."""
    out = tmp_path / "terminated"
    options = ["--steps-per-epoch", "20", "--validation-steps", "2", "--batch-size", "10"]
    process = start(env, "train", "--out", str(out), "--epochs", "1000", *options)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    code, err = finish(process)
    assert code == 128 + signum, err
    assert f"({signal.Signals(signum).name})" in err and f"--out {out} --resume" in err
    assert "Traceback" not in err
    assert processes_in_group(process.pid) == []
    assert_nothing_corrupt(out)
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    with np.load(out / "checkpoint.npz") as checkpoint:
        done = json.loads(checkpoint["state_json"].tobytes())["epoch"]
    code, err = finish(start(env, "train", "--out", str(out), "--resume", "--epochs", str(done + 1), *options))
    assert code == 0, err
    assert len(json.loads((out / "history.json").read_text())["loss"]) == done + 1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# ---------------------------------------------------------------- second pass (issue 22)
# `prepare` held where the signal did harm: the child (background.py) has tokenized the test
# split and waits to send its result, larger than the pipe holds, while the parent still builds
# the vocabulary. A signal then raised in the child outside its function, and multiprocessing
# printed its traceback (8 tries in 12 by timing alone; here every time).
HELD_PREPARE = """
import os, sys, time
import npembed.datasets.imdb as imdb
tokenize, parent = imdb.tokenize, os.getpid()
def held(texts):
    if os.getpid() == parent:               # the vocabulary build, held
        time.sleep(120)
    tokens = tokenize(texts)
    open(sys.argv[1], "w").close()
    return tokens, bytes(8 << 20)
imdb.tokenize = held
from npembed import cli
sys.exit(cli.main(["prepare"]))
"""


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2,
                    reason="the background child exists on Linux with 2 cores or more")
@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False),
                                              (signal.SIGTERM, True), (signal.SIGHUP, True)])
def test_an_interrupted_first_prepare_prints_no_traceback_of_its_child(env, tmp_path, signum, to_group):
    flag = tmp_path / "child-is-working"
    environment = {**env, "NPEMBED_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-c", HELD_PREPARE, str(flag)], env=environment, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), process.communicate()[1]
    (os.killpg if to_group else os.kill)(process.pid, signum)
    code, err = finish(process)
    assert code == 128 + signum, err
    assert "Traceback" not in err and "ForkProcess" not in err, err
    assert f"({signal.Signals(signum).name})" in err and "run it again" in err
    deadline = time.monotonic() + 5
    while processes_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_group(process.pid) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_while_predict_reads_its_input_ends_it(env, tmp_path):
    """`predict -` (or --file FIFO) waiting for input ends on SIGTERM, with a message."""
    process = subprocess.Popen([sys.executable, "-m", "npembed.cli", "predict", "--run", str(tmp_path), "-"],
                               env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    process.stdin.write("a first line, and then nothing")
    process.stdin.flush()
    time.sleep(2)                               # python is started and blocked in the read
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM and "terminated (SIGTERM)" in err
    assert "Traceback" not in err
