"""The files ``skopt-nn`` leaves behind: a results table, cv_results.csv, plots, report.html."""

import html
import io
import math
import os

import numpy as np

__all__ = [
    "format_table", "size_on_disk", "human_bytes", "write_rows", "write_cv_results", "write_plots", "write_html",
]


def human_bytes(n):
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def size_on_disk(model):
    """Bytes of ``joblib.dump(model)``: what the model costs as a file."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.tell()


def format_table(rows, columns):
    """A text table; ``rows`` are dicts, ``columns`` ``(key, header)`` or ``(key, header, show)``.

    ``show`` turns a cell's value into its text (``human_bytes``, a format
    string such as ``"{:.3f}"``); rows keep plain numbers, so the same rows
    are also written as numeric CSV (:func:`write_rows`).
    """
    cells = [[column[1] for column in columns]]
    for row in rows:
        cells.append([_cell(row.get(column[0]), *column[2:]) for column in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for index, line in enumerate(cells):
        # The first column is text, the others numbers.
        parts = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value, show=None):
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "failed"
    if show is None:
        return str(value)
    return show.format(value) if isinstance(show, str) else show(value)


def write_rows(path, rows, fields):
    """Write ``rows`` (dicts) as CSV with the columns ``fields``; missing cells stay empty.

    Values are written as they are, so numbers stay numbers: units belong in
    the field names (``size_bytes``, ``fit_seconds``), not in the cells.
    """
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row[k] for k in fields])
    return path


def write_cv_results(search, path):
    """Write ``search.cv_results_`` as CSV, parameters as readable text.

    Uses only the standard library, so the command's output does not need
    pandas.
    """
    import csv

    results = search.cv_results_
    columns = [k for k in results if k != "params"]
    n = len(results["params"])

    def text(value):
        if value is np.ma.masked:
            return ""
        if isinstance(value, (str, int, float, np.integer, np.floating)):
            return value.item() if isinstance(value, np.generic) else value
        return repr(value)

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(n):
            writer.writerow([text(results[k][i]) for k in columns])
    return path


def _steps_per_epoch(nn, n_rows):
    n_train = n_rows
    if nn._setting("early_stopping"):
        n_train -= int(math.ceil(nn.validation_fraction * n_rows))
    return max(1, -(-n_train // nn._setting("batch_size")))


def write_plots(out_dir, *, search=None, model=None, n_rows=None):
    """Draw every plot that applies; return ``(paths, note)``.

    ``note`` says why plots were skipped (no matplotlib), else is None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install matplotlib)"
    from .. import plotting
    from ..plotting import _fitted_nn
    from ..search.pareto import _metric_names
    from ..specs.schedules import resolve_schedule

    if model is None and search is not None:
        model = getattr(search, "best_estimator_", None)
    drawn = []

    def save(name, draw):
        result = draw()
        fig = np.asarray(result, dtype=object).ravel()[0].figure
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        drawn.append(path)

    if model is not None:
        nn = _fitted_nn(model, "the report")
        save("learning_curve.png", lambda: plotting.plot_learning_curve(nn))
        spec = resolve_schedule(nn._setting("lr_schedule"))
        steps = _steps_per_epoch(nn, n_rows) if n_rows else 1
        save(
            "lr_schedule.png",
            lambda: plotting.plot_lr_schedule(
                spec, lr=nn._setting("lr"), max_epochs=nn._setting("max_epochs"), steps_per_epoch=steps
            ),
        )
        if getattr(nn, "pruning_summary_", None):
            save("sparsity.png", lambda: plotting.plot_sparsity(nn))
    if search is not None:
        save("search_results.png", lambda: plotting.plot_search_results(search))
        save("convergence.png", lambda: plotting.plot_convergence(search))
        if "score_history" in search.cv_results_:
            save("rungs.png", lambda: plotting.plot_rungs(search))
        objectives = getattr(search, "objectives", None) or _metric_names(search.cv_results_)
        if len(objectives) == 2:
            save("pareto_front.png", lambda: plotting.plot_pareto_front(search, objectives))
    return drawn, None


def write_html(path, *, title, intro, table_rows, columns, details, images):
    """A one-page report: the table, a few facts and the plots, side by side."""
    head = "".join(f"<th>{html.escape(column[1])}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c[0]), *c[2:]))}</td>" for c in columns) + "</tr>"
        for r in table_rows
    )
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in details
    )
    figures = "".join(_figure(p) for p in images)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: .5em; vertical-align: top; max-width: 100%; }}
img {{ max-width: 100%; height: auto; }}
figure.half {{ max-width: calc(50% - 1.2em); }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(intro)}</p>
<table><tr>{head}</tr>{body}</table>
<table>{facts}</table>
{figures}
</body></html>
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def _png_size(path):
    """``(width, height)`` in pixels from a PNG's header, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _figure(path):
    """One plot at its own pixel size, shrunk only when the window is narrower.

    A many-panel plot (the search results) is as wide as the page; scaling it
    to the width of the small plots made its labels unreadable.
    """
    name = html.escape(os.path.basename(path))
    caption = html.escape(os.path.splitext(os.path.basename(path))[0].replace("_", " "))
    size = _png_size(path)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    # Single plots go two to a row; a wide one takes its own.
    half = ' class="half"' if size and size[0] <= 700 else ""
    return f'<figure{half}><img src="{name}" alt="{name}"{dims}><figcaption>{caption}</figcaption></figure>'

