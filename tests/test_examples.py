"""Every example in examples/ runs to the end as a script.

Each runs in its own interpreter, as a user would run it, with a
non-interactive matplotlib backend. Two run at a time so that the whole
gallery is checked in about the time of the slowest few.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("plot_*.py"))
# Needs more than the core dependencies.
REQUIRES = {"plot_dask_search.py": "distributed", "plot_onnx_export.py": "onnxruntime"}
TIMEOUT = 120


def _run(path):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True,
            cwd=path.parent, env=env, timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        return exc


@pytest.fixture(scope="module")
def finished():
    """All examples started at once, two at a time; results by file name."""
    pytest.importorskip("matplotlib")
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {path.name: pool.submit(_run, path) for path in EXAMPLES}
    yield futures
    pool.shutdown(cancel_futures=True)


def test_examples_are_found():
    assert len(EXAMPLES) >= 7


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(finished, path):
    if path.name in REQUIRES:
        pytest.importorskip(REQUIRES[path.name])
    result = finished[path.name].result()
    if isinstance(result, subprocess.TimeoutExpired):
        pytest.fail(f"{path.name} ran longer than {TIMEOUT} s")
    assert result.returncode == 0, f"{path.name} failed:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_a_gallery_page(path):
    """sphinx-gallery needs a title in the docstring and ``# %%`` cells."""
    text = path.read_text()
    assert text.startswith('"""\n'), "the first line opens the docstring"
    title, underline = text.splitlines()[1:3]
    assert set(underline) == {"="} and len(underline) == len(title)
    assert "\n# %%\n" in text
