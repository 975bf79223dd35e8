"""The documentation site as built (``mkdocs build --strict``) works offline and from
disk: every script, stylesheet, font and image comes from the site itself, the API
page shows the docstrings' examples as code (no reST ``Example::`` marker), and every
link between pages names an existing ``.html`` file and anchor, so opening
``site/index.html`` from ``file://`` browses the whole site.

Needs the ``docs`` extra (``pip install -e '.[docs]'``); without it these tests skip,
except in CI (``CI`` set), where they fail: ``.ci/run`` installs it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
#: What building the site imports: the docs extra.
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
#: In CSS (a <style>, a style attribute, a built .css): @import "x", @import url(x), url(x).
_CSS_URL = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)|url\(\s*['"]?([^'")\s]+)""")


def _leaves_site(url: str) -> bool:
    """A URL with a scheme (http:, https:...; data: is inline) or protocol-relative."""
    return url.startswith("//") or urlsplit(url).scheme.lower() not in ("", "data")


class Page(HTMLParser):
    """What a built page loads, links to and names (its ids)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.assets: list[tuple[str, str]] = []  # (what, url)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.css: list[str] = []
        self._in_style = False
        self._paragraph: list[str] | None = None
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if "id" in attr:
            self.ids.add(attr["id"])
        if "name" in attr and tag == "a":
            self.ids.add(attr["name"])
        if "style" in attr:
            self.css.append(attr["style"])
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and (
            "src" in attr
        ):
            self.assets.append((f"<{tag} src>", attr["src"]))
        if tag == "link" and "href" in attr:
            self.assets.append((f"<link rel={attr.get('rel', '')} href>", attr["href"]))
        if tag == "a" and "href" in attr:
            self.links.append(attr["href"])
        if tag == "style":
            self._in_style = True
        if tag == "p":
            self._paragraph = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        if tag == "p" and self._paragraph is not None:
            self.paragraphs.append("".join(self._paragraph).strip())
            self._paragraph = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.css.append(data)
        if self._paragraph is not None:
            self._paragraph.append(data)


def _require_docs_extra() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        reason = (
            f"the docs extra is not installed ({', '.join(missing)} missing): "
            "pip install -e '.[docs]'"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as CI builds it (strict), into a temporary directory."""
    _require_docs_extra()
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[Path, Page]:
    parsed = {}
    for path in sorted(site.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        parsed[path] = page
    return parsed


def _css_urls(text: str) -> list[str]:
    return [a or b for a, b in _CSS_URL.findall(text)]


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    for name in ("index", "quickstart", "api", "protocol", "failure-modes"):
        assert (site / f"{name}.html").is_file(), name
    # Directory URLs would have made api/index.html, which file:// shows as a listing.
    assert not (site / "api").exists()


def test_no_asset_comes_from_elsewhere(site: Path, pages: dict[Path, Page]) -> None:
    outside = []
    for path, page in pages.items():
        where = path.relative_to(site).as_posix()
        outside += [(where, what, url) for what, url in page.assets if _leaves_site(url)]
        urls = _css_urls("\n".join(page.css))
        outside += [(where, "css", url) for url in urls if _leaves_site(url)]
    for path in sorted(site.rglob("*.css")):
        where = path.relative_to(site).as_posix()
        urls = _css_urls(path.read_text(encoding="utf-8"))
        outside += [(where, "css", url) for url in urls if _leaves_site(url)]
    assert outside == []
    # What the pages load is there: scripts, stylesheets, the search index as a script.
    index = pages[site / "index.html"]
    loaded = [url for _, url in index.assets if not url.startswith("data:")]
    assert any(url.endswith(".js") for url in loaded) and any(".css" in url for url in loaded)
    for url in loaded:
        assert (site / unquote(urlsplit(url).path)).is_file(), url
    assert (site / "search" / "search_index.js").is_file()


def test_code_is_highlighted_when_built(pages: dict[Path, Page], site: Path) -> None:
    # Pygments at build time: coloured spans in the page, no highlighting script.
    html = (site / "quickstart.html").read_text(encoding="utf-8")
    assert '<div class="highlight"><pre>' in html
    assert '<span class="k">async</span>' in html
    assert not any("highlight" in url for _, url in pages[site / "quickstart.html"].assets)


def test_the_api_page_shows_docstring_examples_as_code(site: Path, pages: dict[Path, Page]) -> None:
    html = (site / "api.html").read_text(encoding="utf-8")
    assert "Example::" not in html
    # A reST literal marker ("text::") left in a docstring would show up as a paragraph.
    assert [p for p in pages[site / "api.html"].paragraphs if p.endswith("::")] == []
    # The Gobstopper class's example is a highlighted block, not a paragraph.
    start = html.index('id="gobstopper.Gobstopper"')
    block = html[start : html.index("</code></pre>", start)]
    assert '<span class="doc-section-title">Examples:</span>' in block
    assert '<span class="n">Gobstopper</span><span class="p">()</span>' in block


def test_links_between_pages_resolve_to_files(site: Path, pages: dict[Path, Page]) -> None:
    broken = []
    checked = 0
    for path, page in pages.items():
        if path.name == "404.html":  # served by a web server for any path: absolute links
            continue
        for href in page.links:
            if _leaves_site(href):
                continue
            parts = urlsplit(href)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            where = f"{path.relative_to(site).as_posix()} -> {href}"
            if parts.path.endswith("/") or target.is_dir():
                broken.append(f"{where}: a directory (a listing from file://)")
            elif not target.is_file():
                broken.append(f"{where}: no such file")
            elif parts.fragment and target.suffix == ".html":
                target_page = pages.get(target)
                if target_page is None or unquote(parts.fragment) not in target_page.ids:
                    broken.append(f"{where}: no such anchor")
            checked += 1
    assert broken == []
    assert checked > 500, checked  # the nav alone links every page from every page
