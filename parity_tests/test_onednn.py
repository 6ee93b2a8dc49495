"""The Keras-facing parity tests again, with TensorFlow's oneDNN optimisations switched off.

oneDNN (on by default on x86-64) changes TensorFlow's summation orders, so the same comparison
rounds differently with it on and off.  The bounds of parity_tests/bounds.py must hold either
way; this runs the one-step and training comparisons in a subprocess with
``TF_ENABLE_ONEDNN_OPTS=0`` (the switch is read once, when TensorFlow loads), on the native
kernels, while the rest of the suite runs with TensorFlow's default and both kernel backends.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONEDNN_BANNER = "oneDNN custom operations are on"


def _tensorflow_banner(setting: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    return subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True,
                          text=True, timeout=300).stderr


def test_the_switch_switches():
    """TensorFlow says oneDNN is on by default here and says nothing of it when it is off, so
    the run below really compares another summation order."""
    assert ONEDNN_BANNER in _tensorflow_banner(None)
    assert ONEDNN_BANNER not in _tensorflow_banner("0")


@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0", reason="this run already has oneDNN off")
def test_parity_with_onednn_off():
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    # npembed's kernel backends do not depend on TensorFlow's oneDNN: the main run crosses them
    # with oneDNN on; here the native backend alone meets oneDNN off
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "parity_tests/test_keras_parity.py", "parity_tests/test_keras_training.py",
               "-k", "not npembed_grads and not numpy"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, f"with oneDNN off: {summary}\n{result.stdout[-6000:]}"
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
