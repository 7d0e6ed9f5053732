"""The files the command leaves behind: numeric CSV and a readable HTML report."""

import csv
import re

import pytest

from skopt_nn.cli._report import format_table, human_bytes, write_html, write_rows

ROWS = [
    {"model": "teacher", "test_accuracy": 0.964, "size_bytes": 1_782_579, "fit_seconds": 1.9},
    {"model": "student", "test_accuracy": 0.984, "sparsity": 0.57, "parameters": 8185,
     "size_bytes": 64_307, "fit_seconds": 1.1},
]
COLUMNS = [
    ("model", "model"),
    ("test_accuracy", "test accuracy", "{:.3f}"),
    ("sparsity", "sparsity", "{:.0%}"),
    ("parameters", "parameters", "{:,}"),
    ("size_bytes", "size on disk", human_bytes),
    ("fit_seconds", "fit time", "{:.1f} s"),
]


def test_results_csv_holds_numbers_with_units_in_the_column_names(tmp_path):
    path = write_rows(tmp_path / "results.csv", ROWS, [c[0] for c in COLUMNS])
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["model", "test_accuracy", "sparsity", "parameters", "size_bytes", "fit_seconds"]
    assert int(table[0]["size_bytes"]) == 1_782_579 and float(table[1]["fit_seconds"]) == 1.1
    assert table[0]["sparsity"] == ""  # not applicable: empty, not "-"


def test_the_text_table_shows_the_same_numbers_for_people():
    table = format_table(ROWS, COLUMNS)
    assert "1.7 MiB" in table and "62.8 KiB" in table and "57%" in table and "8,185" in table
    assert "1.9 s" in table and "0.984" in table


def _png(path, width, height):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width / 100, height / 100))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def test_report_shows_each_plot_at_its_own_size(tmp_path):
    pytest.importorskip("matplotlib")
    small = _png(tmp_path / "convergence.png", 600, 400)
    wide = _png(tmp_path / "search_results.png", 1200, 640)
    page = write_html(tmp_path / "report.html", title="t", intro="i", table_rows=ROWS,
                      columns=COLUMNS, details=[], images=[small, wide])
    text = page.read_text()
    # The six-panel plot keeps its 1200 pixels; only a narrower window shrinks it.
    assert re.search(r'src="search_results.png"[^>]*width="1200" height="640"', text)
    assert re.search(r'src="convergence.png"[^>]*width="600"', text)
    assert "img { max-width: 100%; height: auto; }" in text
    assert not re.search(r"img \{[^}]*max-width: \d+em", text)
    assert "<td>1.7 MiB</td>" in text
