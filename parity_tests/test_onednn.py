"""The Keras-facing parity tests again, with TensorFlow's oneDNN optimisations switched the other way.

oneDNN changes TensorFlow's summation orders, so the same comparison rounds differently with it
on and off.  The bounds of parity_tests/bounds.py must hold either way.  Which way is TensorFlow's
default depends on the CPU: on where it has AVX-512 (VNNI, BF16) or AMX, off on others (an
AVX2-only AMD EPYC here).  So this test asks TensorFlow which its default is, and runs the one-step
and training comparisons in a subprocess with the other setting (``TF_ENABLE_ONEDNN_OPTS`` is read
once, when TensorFlow loads), on the native kernels, while the rest of the suite runs with the
default and both kernel backends.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONEDNN_BANNER = "oneDNN custom operations are on"


def _onednn_on(setting: str | None) -> bool:
    """Whether TensorFlow, loaded with TF_ENABLE_ONEDNN_OPTS=setting (None: unset), says oneDNN is on."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    stderr = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True,
                            text=True, timeout=300).stderr
    return ONEDNN_BANNER in stderr


def test_the_switch_switches():
    """TF_ENABLE_ONEDNN_OPTS=1 turns oneDNN on and 0 off (TensorFlow says so when it is on), so
    the run below really compares another summation order, whatever this CPU's default."""
    assert _onednn_on("1")
    assert not _onednn_on("0")


def test_parity_with_the_other_onednn_setting():
    other = "0" if _onednn_on(None) else "1"
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == other:
        pytest.skip(f"this run already has TF_ENABLE_ONEDNN_OPTS={other}")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": other}
    # npembed's kernel backends do not depend on TensorFlow's oneDNN: the main run crosses them
    # with the default; here the native backend alone meets the other setting
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "parity_tests/test_keras_parity.py", "parity_tests/test_keras_training.py",
               "-k", "not npembed_grads and not numpy"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, f"with TF_ENABLE_ONEDNN_OPTS={other}: {summary}\n{result.stdout[-6000:]}"
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
