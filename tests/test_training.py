"""The main job on the real data: run folder, resume, divergence, exports, CLI errors."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from npembed import cli
from npembed.export import nearest_neighbors, read_tsv_lines
from npembed.loop import Callback
from npembed.errors import RunFolderError
from npembed.training import TrainConfig, load_run, train

QUICK = dict(epochs=3, steps_per_epoch=40, validation_steps=5)


class InterruptAt(Callback):
    def __init__(self, epoch, step):
        self.epoch, self.step, self.current = epoch, step, None

    def on_epoch_begin(self, epoch):
        self.current = epoch

    def on_train_batch_end(self, step, logs):
        if self.current == self.epoch and step == self.step:
            raise KeyboardInterrupt


class PoisonAt(InterruptAt):
    def on_train_batch_end(self, step, logs):
        if self.current == self.epoch and step == self.step:
            self.model.weights[1][...] = np.nan


@pytest.fixture(scope="module")
def finished_run(imdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "quick"
    train(TrainConfig(**QUICK), out, data=imdb, progress=False)
    return out


def test_run_folder_contents(finished_run):
    for name in ("config.json", "checkpoint.npz", "history.json", "history.csv", "results.json", "loss.png",
                 "accuracy.png", "vecs.tsv", "meta.tsv", "projector_config.pbtxt", "weights.npz", "vocab.subwords"):
        assert (finished_run / name).is_file(), name
    history = json.loads((finished_run / "history.json").read_text())
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.values())
    results = json.loads((finished_run / "results.json").read_text())
    assert results["test_reviews"] == 25_000 and 0 <= results["test_accuracy"] <= 1
    assert not list(finished_run.glob(".*tmp-*"))


def test_projector_files_in_the_tutorial_format(finished_run, imdb):
    model, _, encoder = load_run(finished_run)
    vecs = read_tsv_lines(finished_run / "vecs.tsv")
    meta = read_tsv_lines(finished_run / "meta.tsv")
    assert len(vecs) == len(meta) == len(encoder.subwords) == 7928
    assert meta[:3] == ["the_", ", ", ". "]
    assert any("\u0085" in line for line in meta)          # split on "\n" only
    table = model.weights[0]
    for k in (0, 1, 7927):
        np.testing.assert_array_equal(np.array(vecs[k].split("\t"), dtype=np.float32), table[k + 1])
    assert 'tensor_path: "vecs.tsv"' in (finished_run / "projector_config.pbtxt").read_text()


def test_resume_after_a_kill_mid_epoch_gives_the_same_weights(imdb, finished_run, tmp_path):
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**QUICK), out, data=imdb, progress=False, extra_callbacks=[InterruptAt(1, 20)])
    assert (out / "checkpoint.npz").is_file() and not (out / "weights.npz").exists()
    train(None, out, data=imdb, resume=True, progress=False)
    with np.load(finished_run / "weights.npz") as a, np.load(out / "weights.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert json.loads((out / "history.json").read_text()) == json.loads((finished_run / "history.json").read_text())


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(imdb, tmp_path):
    out = tmp_path / "diverged"
    with pytest.raises(RunFolderError, match="training diverged: the loss is nan.*checkpoint of the last good epoch"):
        train(TrainConfig(**QUICK), out, data=imdb, progress=False, extra_callbacks=[PoisonAt(1, 10)])
    state = np.load(out / "checkpoint.npz")
    assert np.all(np.isfinite(state["weight_1"]))
    assert json.loads(state["state_json"].tobytes())["epoch"] == 1


class RecordWeights(Callback):
    def __init__(self):
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs):
        self.per_epoch.append(self.model.get_weights())


def test_early_stopping_restores_the_best_epoch(imdb, tmp_path):
    out = tmp_path / "early"
    config = TrainConfig(epochs=12, steps_per_epoch=30, validation_steps=3, early_stopping=1, learning_rate=0.05)
    recorder = RecordWeights()
    train(config, out, data=imdb, progress=False, extra_callbacks=[recorder])
    val_loss = json.loads((out / "history.json").read_text())["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) < 12, "this configuration overfits within 12 epochs: early stopping must fire"
    assert len(val_loss) - 1 - best == 1            # stopped after one epoch without improvement
    with np.load(out / "weights.npz") as final:
        for name, expected in zip(["embedding__embeddings", "dense__kernel"], recorder.per_epoch[best]):
            np.testing.assert_array_equal(final[name], expected)


def test_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NPEMBED_DATA", raising=False)
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--epochs", "0", "--data", "x"]) == 2
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "missing.tar.gz")]) == 3
    assert not (tmp_path / "r").exists(), "a start that failed leaves no folder behind"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    assert cli.main(["train", "--out", str(tmp_path / "junk"), "--resume"]) == 4
    assert cli.main(["predict", "--run", str(tmp_path / "junk"), "great"]) == 4
    err = capsys.readouterr().err
    assert "--epochs must be an integer >= 1, got 0" in err
    assert "does not exist" in err
    assert "is not an npembed run folder" in err


def test_cli_refuses_to_overwrite_a_run(finished_run, capsys):
    assert cli.main(["train", "--out", str(finished_run)]) == 4
    assert "already holds a run: pass --resume" in capsys.readouterr().err


def test_cli_predict_neighbors_evaluate(finished_run, capsys):
    assert cli.main(["predict", "--run", str(finished_run), "A wonderful, moving film.", "Awful. Boring."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(0 <= float(line.split()[0]) <= 1 for line in lines)
    assert cli.main(["neighbors", "--run", str(finished_run), "great", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "'great' is subword" in out and len(out.strip().splitlines()) == 4
    assert cli.main(["neighbors", "--run", str(finished_run), "unbelievably"]) == 0
    assert "splits into" in capsys.readouterr().out
    assert cli.main(["neighbors", "--run", str(finished_run), "東"]) == 2
    assert "not in the vocabulary" in capsys.readouterr().err


def test_nearest_neighbors_by_cosine():
    table = np.array([[0, 0], [1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    result = nearest_neighbors(table, 1, k=3)
    assert [i for i, _ in result] == [2, 3, 4]
    assert result[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(bool(os.environ.get("CI")), reason="starts a real TensorBoard server: not under CI")
def test_tensorboard_projector_serves_the_run(finished_run, tmp_path):
    tensorboard = shutil.which("tensorboard") or os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.path.exists(tensorboard):
        pytest.skip("tensorboard is not installed")
    logdir = tmp_path / "logs"
    shutil.copytree(finished_run, logdir)
    port = _free_port()
    server = subprocess.Popen([tensorboard, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/data/plugin/projector"
    try:
        runs = None
        for _ in range(60):
            try:
                runs = json.loads(urllib.request.urlopen(f"{base}/runs", timeout=2).read())
                break
            except OSError:
                time.sleep(0.5)
        assert runs == ["."], runs
        config = json.loads(urllib.request.urlopen(f"{base}/info?run=.", timeout=10).read())
        assert config["embeddings"][0]["tensorName"] == "embedding"
        metadata = urllib.request.urlopen(f"{base}/metadata?run=.&name=embedding", timeout=10).read().decode()
        assert metadata.split("\n")[:2] == ["the_", ", "]
        tensor = urllib.request.urlopen(f"{base}/tensor?run=.&name=embedding&num_rows=3", timeout=10).read()
        assert len(np.frombuffer(tensor, dtype=np.float32)) == 3 * 16
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_cli_resume_keeps_the_runs_own_options(imdb, tmp_path, monkeypatch):
    """`npembed train --out RUN --resume` continues with RUN's config.json, not the defaults."""
    out = tmp_path / "cli_run"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=2, steps_per_epoch=10, validation_steps=2, batch_size=5), out, data=imdb,
              progress=False, extra_callbacks=[InterruptAt(1, 3)])
    monkeypatch.setenv("NPEMBED_DATA", str(imdb.source.path))
    assert cli.main(["train", "--out", str(out), "--resume"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 2 and config["batch_size"] == 5
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2


def test_cli_grads_on_a_real_review(imdb, capsys, monkeypatch):
    monkeypatch.setenv("NPEMBED_DATA", str(imdb.source.path))
    assert cli.main(["grads", "--index", "3", "--no-keras"]) == 0
    out = capsys.readouterr().out
    assert "train review 3 (aclImdb/train/" in out and "loss: " in out
    assert "embedding/embeddings" in out and "'the_'" in out and "slices" in out
    errors = [float(line.split("rel_error")[1].split()[0]) for line in out.splitlines() if "rel_error" in line]
    assert len(errors) == 5 and max(errors) < 1e-6
    chain = out[out.index("the chain for review 0"):out.index("gradient norms")]
    assert "p - y = -" in chain and "sends the same slice g" in chain and " x g " in chain
    bias_check = next(line for line in out.splitlines() if line.strip().startswith("dense_1/bias") and "rel_error" in line)
    assert bias_check.split("analytic/numeric: ")[1].count("/") == 1    # its one entry, once (not 4 times)
    for line in out.splitlines():
        if "rel_error" in line:              # sampled entries are distinct and nonzero
            pairs = line.split("analytic/numeric: ")[1].rstrip(")").split(", ")
            assert len(set(pairs)) == len(pairs) and all(float(p.split("/")[0]) != 0 for p in pairs)
    assert cli.main(["grads", "--text", "A wonderful film.", "--label", "1", "--no-keras"]) == 0
    assert "the text 'A wonderful film.' (label 1)" in capsys.readouterr().out


def test_train_refuses_option_names_it_does_not_know(imdb, finished_run, tmp_path):
    """The Python API: an unknown option name (a typo) is refused, new run or resume, not ignored."""
    from npembed.errors import UsageError
    with pytest.raises(UsageError, match="'epoch' is not an option of npembed train"):
        train({"epoch": 3}, tmp_path / "new", data=imdb, progress=False)
    assert not (tmp_path / "new").exists()
    with pytest.raises(UsageError, match="--buckets is an option of --model ngrams"):
        train({"model": "tutorial", "buckets": 10}, tmp_path / "new", data=imdb, progress=False)
    with pytest.raises(UsageError, match="'epoch' is not an option"):
        train({"epoch": 5}, finished_run, data=imdb, resume=True, progress=False)


def test_a_run_folder_from_before_model_is_read_as_its_model(finished_run, tmp_path):
    """config.json written before --model (the model chosen by `ngrams`) is read as the model it
    describes; one trained with --nb-init / --nb-rates, which left the product, is refused by name."""
    from npembed.errors import RunFolderError
    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    document = json.loads((old / "config.json").read_text())
    assert document.pop("model") == "tutorial" and document.pop("model_options") == {}
    document.update(ngrams=0, buckets=2_000_000, validation_reviews=2500, nb_init=False, nb_rates=False,
                    adam_variant="textbook")
    (old / "config.json").write_text(json.dumps(document))
    model, config, _ = load_run(old)
    assert (config.model, config.adam_variant, config.epochs) == ("tutorial", "keras2", 3)
    with np.load(finished_run / "weights.npz") as kept:
        np.testing.assert_array_equal(model.weights[0], kept["embedding__embeddings"])
    document.update(ngrams=2, nb_rates=True)
    (old / "config.json").write_text(json.dumps(document))
    with pytest.raises(RunFolderError, match="format before --model.*--nb-rates"):
        load_run(old)
    document = json.loads((finished_run / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**document, "model": "transformer"}))
    with pytest.raises(RunFolderError, match="a run of --model transformer, which this npembed does not have"):
        load_run(old)


def test_resuming_under_the_other_kernel_backend_says_so(imdb, tmp_path, capsys):
    """Issue 22 item 9: the checkpoint records its kernel backend; a resume under the other one
    says in one line that the result will not be bit-identical."""
    from npembed import kernels
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**QUICK), out, data=imdb, progress=False, extra_callbacks=[InterruptAt(1, 5)])
    with np.load(out / "checkpoint.npz") as checkpoint:
        arrays = {key: checkpoint[key] for key in checkpoint.files}
    document = json.loads(arrays["state_json"].tobytes())
    assert document["kernels"] == kernels.backend()
    other = "numpy" if kernels.backend() == "native" else "native"
    document["kernels"] = other
    arrays["state_json"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    np.savez(out / "checkpoint.npz", **arrays)
    train(None, out, data=imdb, resume=True, progress=True)
    notes = [line for line in capsys.readouterr().err.splitlines() if "bit-identical" in line]
    assert len(notes) == 1 and f"with the {other} kernels" in notes[0]


def test_train_help_shows_the_models_and_no_experiments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--model {tutorial,ngrams,rnn,rnn-stacked}" in text and "--model ngrams:" in text and "--buckets" in text
    assert "--model rnn:" in text and "--lstm-units" in text
    assert "--nb-init" not in text and "--nb-rates" not in text


def test_vocabulary_search_prints_one_progress_line(capsys, monkeypatch):
    """The 16 candidates of the min_count search share one line, rewritten in place on a
    terminal, and print nothing into a log; the next message starts on a line of its own."""
    from npembed.datasets.imdb import _Reporter
    say = _Reporter(True)
    for quiet in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: not quiet)
        for candidate in range(16):
            say.detail(f"min_count={candidate}: vocab_size={8000 + candidate}")
        say("vocabulary built")
        err = capsys.readouterr().err
        assert err.count("\n") == (1 if quiet else 2) and err.endswith("\nnpembed: vocabulary built\n"[quiet:])
        assert err.count("min_count=") == (0 if quiet else 16) and err.count("\r") == (0 if quiet else 16)


def test_the_epoch_line_never_shows_a_total_below_its_training_time(monkeypatch, capsys):
    from npembed import training
    bar = training._ProgressBar(steps=10, epochs=10)
    bar.bar, bar.start, bar.trained = None, 100.0, 100.706      # epoch start, its last step
    monkeypatch.setattr(training.time, "perf_counter", lambda: 100.7062)     # the epoch's end
    bar.on_epoch_end(0, {"loss": 0.5})
    line = capsys.readouterr().out
    total, training_seconds = float(line.split(" - ")[1].split("s")[0]), float(line.split("training ")[1].split("s")[0])
    assert training_seconds <= total, line


def test_an_interrupted_start_does_not_advise_resuming_a_run_that_is_not_there(tmp_path, capsys, monkeypatch):
    """Issue 22 item 8: stopped before config.json was written (the start is undone), train
    says to run the same command again; once the run exists, it says --resume."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "train", interrupted)
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "No run was started" in err and "--resume" not in err
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert cli.main(["train", "--out", str(out)]) == 130
    assert f"`npembed train --out {out} --resume`" in capsys.readouterr().err
