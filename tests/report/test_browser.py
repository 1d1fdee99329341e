"""The report as a person sees it: ``index.html`` rendered in headless Chromium (Debian package
``chromium``; ``.ci/run`` installs it when it can, else this test is skipped). Every image must
load (naturalWidth > 0) and every claim of the catalogue must have a row in the claims table."""

import json
import re
import shutil
import subprocess

import pytest

from normtheory.claims import CLAIMS
from normtheory.cli import main

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--virtual-time-budget=5000",
    "--dump-dom",
]
# Injected into a copy of the page: after every image has loaded (or failed), a JSON summary of
# the images and claim rows as the browser sees them, for --dump-dom to print.
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) {
    return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth};
  });
  var rows = Array.from(document.querySelectorAll('table.claims tr[data-claim]')).map(
    function (r) { return r.cells[0].textContent; });
  var pre = document.createElement('pre');
  pre.id = 'nt-check';
  pre.textContent = JSON.stringify({images: imgs, rows: rows});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_chromium_with_every_image_and_claim(report_runs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    out = tmp_path / "rep"
    assert main(["report", *(str(p) for p in report_runs.values()), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    check = out / "_check.html"  # same folder, so relative figure paths resolve as in index.html
    check.write_text(page.replace("</body>", CHECK + "</body>"))
    proc = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", check.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="nt-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, f"no check output from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    images = result["images"]
    expected = {f"figures/{p.name}" for p in (out / "figures").glob("*.png")}
    assert {i["src"] for i in images} == expected and len(expected) >= 4
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert set(result["rows"]) == set(CLAIMS)
