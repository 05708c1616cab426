"""Brings the repository's notebooks into the docs: copies ``<repo>/notebooks/*.ipynb`` into
``docs/notebooks/`` and writes ``docs/notebooks/index.md`` with a toctree of them.

Copies rather than a symlink so that the docs build whatever set of notebooks exists (none
included) without a dangling link or a toctree entry for a missing file. Files are written
only when their content changes, so an unchanged notebook is not re-read by Sphinx. myst-nb
renders the outputs stored in the notebooks (``nb_execution_mode = "off"`` in conf.py).

A notebook is copied byte for byte, except that one without a level-1 heading gets one (from
its file name; Sphinx warns about a page without a title) and one without language metadata
gets Python's (myst-nb warns that it cannot highlight its cells otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

INTRO = """\
# Notebooks

Worked examples, each a Jupyter notebook in the repository's `notebooks/` folder. The pages
below show the outputs saved in the notebooks; the documentation build does not run them. Use
the download button at the top of a page to get the notebook and run it yourself.
"""


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _title(cells: list[dict]) -> str | None:
    """The first level-1 Markdown heading of a notebook's cells, or None."""
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        for line in text.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return None


def _prepared(notebook: Path) -> bytes:
    """The notebook's bytes, with a title and language metadata added where missing."""
    data = notebook.read_bytes()
    try:
        content = json.loads(data)
    except ValueError:
        return data  # myst-nb reports the broken file
    cells = content.setdefault("cells", [])
    metadata = content.setdefault("metadata", {})
    has_title = _title(cells) is not None
    has_language = "language_info" in metadata or "kernelspec" in metadata
    if has_title and has_language:
        return data
    if not has_title:
        title = notebook.stem.replace("_", " ")
        cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": f"# {title}"})
    if not has_language:
        metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    return json.dumps(content, indent=1).encode("utf-8")


def _index(notebooks: list[Path]) -> str:
    if not notebooks:
        return INTRO + "\nNo notebooks were found when these pages were built.\n"
    entries = "\n".join(nb.stem for nb in notebooks)
    return INTRO + "\n```{toctree}\n:maxdepth: 1\n\n" + entries + "\n```\n"


def sync_notebooks(app: Sphinx) -> None:
    source_dir = Path(app.srcdir).parent / "notebooks"
    target_dir = Path(app.srcdir) / "notebooks"
    target_dir.mkdir(exist_ok=True)
    notebooks = sorted(source_dir.glob("*.ipynb")) if source_dir.is_dir() else []
    for nb in notebooks:
        _write_if_changed(target_dir / nb.name, _prepared(nb))
    wanted = {nb.name for nb in notebooks}
    for stale in target_dir.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    _write_if_changed(target_dir / "index.md", _index(notebooks).encode("utf-8"))
    logger.info("gradtx_notebooks: %d notebook(s) from %s", len(notebooks), source_dir)


def setup(app: Sphinx) -> dict:
    # builder-inited runs before Sphinx looks for source files, so the copies are found.
    app.connect("builder-inited", sync_notebooks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
