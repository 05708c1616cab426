"""The documentation site builds with warnings as errors: every public name documented, every
torch argument mapped, every optimizer's update rule present (checks in docs/_ext)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    html = tmp_path / "html"
    assert (html / "api" / "index.html").exists()
    # Formulas render offline: MathJax is loaded from the site itself, never from a CDN.
    page = (html / "api" / "generated" / "gradtx.adam.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]*)"', page)
    mathjax = [src for src in scripts if "mathjax" in src.lower()]
    assert mathjax == ["../../_static/mathjax/tex-chtml.js"], scripts
    assert (html / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    assert not [src for src in scripts if src.startswith(("http:", "https:", "//"))], scripts


def test_a_docs_build_without_the_references_says_what_to_install(monkeypatch):
    """The tables need torch and the reference packages: one error naming the install, not a
    warning per table."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import gradtx_tables
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    from sphinx.errors import ExtensionError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ExtensionError, match=r'missing: torch\. .*pip install -e "\.\[test\]"'):
        gradtx_tables._check_references()
