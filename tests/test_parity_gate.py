"""Without TensorFlow the parity suite skips with its reason, except under CI, where it fails."""
import builtins

import pytest

from parity_tests.conftest import _require_tensorflow


@pytest.fixture
def no_tensorflow(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_skips_with_the_reason_outside_ci(no_tensorflow, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="parity tests need TensorFlow"):
        _require_tensorflow()


def test_fails_under_ci(no_tensorflow, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the parity tests"):
        _require_tensorflow()
