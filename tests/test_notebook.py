"""docs/tutorial.ipynb runs from top to bottom, so it cannot rot.

    python tests/test_notebook.py --write     # re-run it and save the outputs (`make notebook`)

The notebook runs in a Jupyter kernel started from this Python (sys.executable, whatever
kernelspecs the machine has: a venv's own `python3` spec starts whatever `python` is on PATH),
with the repository first on PYTHONPATH, so it imports this checkout's npembed.  Any cell that
raises fails the test (nbclient raises CellExecutionError).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
KERNEL = "npembed-python"


def execute(path: Path, out: Path, timeout: int = 600):
    """Run every cell of the notebook at ``path`` (its folder as the working directory) and
    return the executed notebook; raises nbclient's CellExecutionError at the first failing cell.
    The kernel is shut down before this returns or raises.
    ``out`` is where the notebook writes vecs.tsv and meta.tsv (NPEMBED_NOTEBOOK_OUT)."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as specs:
        write_kernel_spec(Path(specs) / KERNEL)              # argv: [sys.executable, -m, ipykernel_launcher, ...]
        manager = KernelManager(kernel_name=KERNEL,
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs], ensure_native_kernel=False))
        env = {**os.environ, "NPEMBED_NOTEBOOK_OUT": str(out),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if os.environ.get("NPEMBED_DATA"):      # the kernel runs in docs/: a relative path would move
            env["NPEMBED_DATA"] = str(Path(os.environ["NPEMBED_DATA"]).resolve())
        client = NotebookClient(notebook, km=manager, timeout=timeout, record_timing=False,     # no timestamps in diffs
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute(env=env)
        finally:        # a kernel manager passed in is not the client's to stop: stop it here, pass or fail
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)
    return notebook


def _needs_nbclient():
    """nbclient, nbformat and ipykernel come with the test extra; under CI their absence fails."""
    try:
        import ipykernel, nbclient, nbformat  # noqa: F401, E401
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the notebook: {err} (pip install -e '.[test]')")
        pytest.skip(f"{err}: pip install -e '.[test]'")


def _needs_data():
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import real_data_path
    if real_data_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the notebook: ../shared/data/aclImdb_labeled.tar.gz is missing")
        pytest.skip("no IMDB data: set NPEMBED_DATA or place ../shared/data/aclImdb_labeled.tar.gz")


def test_notebook_runs_from_top_to_bottom(tmp_path):
    _needs_nbclient()
    _needs_data()
    notebook = execute(NOTEBOOK, tmp_path)
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    assert (tmp_path / "vecs.tsv").exists() and (tmp_path / "meta.tsv").exists()


def test_without_tensorflow_the_keras_columns_are_skipped_with_a_note(tmp_path, monkeypatch):
    """A learner without TensorFlow runs every cell too: `import tensorflow` fails (a stand-in
    package that raises ImportError, first on the path) and the notebook says what it skips."""
    _needs_nbclient()
    _needs_data()
    fake = tmp_path / "no_tensorflow" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named tensorflow (simulated)")\n')
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    notebook = execute(NOTEBOOK, tmp_path)
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "No TensorFlow" in printed and "the Keras columns are skipped" in printed
    assert "Keras 3 Adam" not in printed and (tmp_path / "vecs.tsv").exists()


def test_a_broken_copy_of_the_notebook_fails(tmp_path):
    """The test above could pass by running nothing: a copy of the notebook with one early cell
    broken must fail, naming the error, and stop there."""
    _needs_nbclient()
    import nbformat
    from nbclient.exceptions import CellExecutionError
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    code_cells[1].source += "\n1 / 0"
    broken = tmp_path / "broken.ipynb"
    nbformat.write(notebook, broken)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute(broken, tmp_path)
    assert not (tmp_path / "vecs.tsv").exists()          # it stopped at the broken cell


def test_the_committed_notebook_holds_the_outputs_of_a_run():
    """So that it reads on a repository page: every code cell ran, in order, with no error."""
    _needs_nbclient()
    import nbformat
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1)), \
        "run: make notebook"
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]


def test_the_kernel_is_this_python_and_this_checkout(tmp_path):
    _needs_nbclient()
    import nbformat
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, npembed\nprint(sys.prefix)\nprint(npembed.__file__)")])
    path = tmp_path / "which.ipynb"
    nbformat.write(notebook, path)
    prefix, module = execute(path, tmp_path).cells[0].outputs[0]["text"].split()
    assert prefix == sys.prefix                     # this venv, not the first python on PATH
    assert Path(module).resolve() == (ROOT / "npembed" / "__init__.py").resolve()


def test_the_kernel_is_shut_down_when_the_run_ends(tmp_path):
    """No ipykernel outlives its test (four did, 1.2 GB together, until pytest exited), after a
    run that passes and after one that fails."""
    _needs_nbclient()
    import nbformat
    from nbclient.exceptions import CellExecutionError
    for fails in (False, True):
        pid_file = tmp_path / f"pid-{fails}.txt"
        source = f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))" + ("\n1 / 0" if fails else "")
        path = tmp_path / "pid.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
        if fails:
            with pytest.raises(CellExecutionError):
                execute(path, tmp_path)
        else:
            execute(path, tmp_path)
        with pytest.raises(ProcessLookupError):        # the kernel's process is gone, and reaped
            os.kill(int(pid_file.read_text()), 0)


def coalesce_streams(notebook) -> None:
    """Join each cell's consecutive stdout (stderr) pieces into one: how the kernel happened to
    flush them would otherwise change the saved file from one run to the next."""
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if (output.output_type == "stream" and outputs and outputs[-1].output_type == "stream"
                    and outputs[-1].name == output.name):
                outputs[-1].text += output.text
            else:
                outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = outputs


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_notebook.py --write   (re-runs docs/tutorial.ipynb, saves its outputs)")
    import nbformat
    out = Path(os.environ.get("NPEMBED_NOTEBOOK_OUT", ROOT / "runs" / "notebook"))
    out.mkdir(parents=True, exist_ok=True)
    notebook = execute(NOTEBOOK, out)
    coalesce_streams(notebook)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)} (outputs of this run); vecs.tsv, meta.tsv in {out}")
