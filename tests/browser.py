"""The report in headless Chromium: screenshots, and layout facts measured in the page (what overflows its box).

:func:`layout_facts` loads a copy of a report with a small script added (the report itself has none) that opens
every ```<details>``, measures every table container and figure image against its container and the viewport,
and posts what it found as JSON to a host page that shows it in an iframe of the width asked for (headless
Chromium's windows are at least 500 px wide; an iframe's viewport can be a phone's 390); ``chromium --dump-dom``
returns the host page, the JSON is read back from it.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

MEASURE = """
<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const root = document.documentElement;
  const facts = {innerWidth: window.innerWidth, clientWidth: root.clientWidth, pageWidth: root.scrollWidth,
                 tables: 0, figures: 0, overflow: []};
  const name = el => el.id || (el.textContent || "").trim().slice(0, 50);
  const outside = (el, box) => {
    const r = el.getBoundingClientRect(), b = box.getBoundingClientRect();
    return r.right > b.right + 1 || r.left < b.left - 1;
  };
  document.querySelectorAll("div.table").forEach(div => {
    facts.tables += 1;
    const table = div.querySelector("table");
    if (div.scrollWidth > div.clientWidth + 1 || outside(table, div) || outside(div, document.body))
      facts.overflow.push({kind: "table", id: div.id, name: name(table), width: div.scrollWidth,
                           box: div.clientWidth});
  });
  document.querySelectorAll("figure").forEach(fig => {
    const img = fig.querySelector("img");
    facts.figures += 1;
    if (!img.complete || img.naturalWidth === 0 || img.getBoundingClientRect().width === 0)
      facts.overflow.push({kind: "figure not drawn", id: fig.id, name: img.alt.slice(0, 50)});
    else if (outside(img, fig) || outside(fig, document.body))
      facts.overflow.push({kind: "figure", id: fig.id, name: img.alt.slice(0, 50),
                           width: img.getBoundingClientRect().width, box: fig.getBoundingClientRect().width});
  });
  if (root.scrollWidth > root.clientWidth + 1)
    facts.overflow.push({kind: "page", id: "", name: "the page scrolls sideways", width: root.scrollWidth,
                         box: root.clientWidth});
  parent.postMessage(JSON.stringify(facts), "*");
});
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def require_chromium() -> str:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not found in CI (install it: apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return chromium


MIN_WINDOW = 500  # headless Chromium widens narrower windows to 500 px: narrower viewports are iframes


def _chromium(chromium: str, profile: Path, width: int, height: int, *args: str) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", f"--user-data-dir={profile}", f"--window-size={max(width, MIN_WINDOW)},{height}",
            *args]


def _host(page: Path, width: int, height: int, workdir: Path) -> Path:
    """A page that shows ``page`` in an iframe ``width`` px wide (the iframe's viewport is what its media
    queries and layout see) and copies the layout facts the iframe posts into itself."""
    host = workdir / f"host-{width}.html"
    host.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">'
        f'<iframe src="{page.name}" style="border:0;display:block;width:{width}px;height:{height}px"></iframe>'
        '<script>window.addEventListener("message", e => { const p = document.createElement("pre");'
        ' p.id = "layout-facts"; p.textContent = e.data; document.body.appendChild(p); });</script>'
        "</body></html>")
    return host


def layout_facts(page: Path, width: int, workdir: Path, extra_html: str = "") -> dict[str, Any]:
    """The layout facts of ``page`` at a window ``width`` px wide; ``extra_html`` is added before the script (the
    tests plant a too-wide table with it to see the check fail)."""
    chromium = require_chromium()
    probe = workdir / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", extra_html + MEASURE + "</body>"))
    host = _host(probe, width, 1000, workdir)
    cmd = _chromium(chromium, workdir / f"profile-{width}", width, 1000, "--virtual-time-budget=20000",
                    "--dump-dom", host.resolve().as_uri())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="layout-facts">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no layout facts from chromium (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, width: int, height: int, workdir: Path) -> Path:
    chromium = require_chromium()
    shot = workdir / f"shot-{width}.png"
    shown = page.parent / f".shot-{width}.html"
    shown.write_text(_host(page, width, height, workdir).read_text())  # beside the page: the iframe's src is relative
    cmd = _chromium(chromium, workdir / f"profile-shot-{width}", width, height, f"--screenshot={shot}",
                    shown.resolve().as_uri())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr[-2000:]
    return shot
