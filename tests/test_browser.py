"""The report in a real browser: headless Chromium (Debian packages ``chromium`` and
``chromium-driver``) driven by Selenium opens the page from disk and checks that clusters
render, the filter box filters, and hostile training text stays text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import forensics
from forensics import report

from test_report import HOSTILE_PROMPT, build_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.browser


def _driver(tmp_path: Path):
    if not (CHROMIUM.exists() or shutil.which("chromium")) or not (
            CHROMEDRIVER.exists() or shutil.which("chromedriver")):
        pytest.skip("chromium / chromedriver not installed "
                    "(apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,2400",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(flag)
    service = Service(str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")))
    return webdriver.Chrome(service=service, options=opts)


def test_report_in_headless_chromium(tmp_path):
    ws_path, run_id = build_run(tmp_path)
    with forensics.open(ws_path, read_only=True) as ws:
        # embed=False keeps the test fast; the embedder path is covered in test_report.py
        page = report.write_report(ws, run_id, tmp_path / "report.html", embed=False)
    drv = _driver(tmp_path)
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        drv.get(page.as_uri())
        WebDriverWait(drv, 20).until(
            lambda d: d.execute_script("return document.body.getAttribute('data-ready')") == "1")
        # no script injected by training data ran, and the page's own script did
        assert drv.execute_script("return typeof window.__pwned") == "undefined"
        assert drv.execute_script("return document.querySelectorAll('img').length") == 0

        # clusters render, ranked, with labels; the map is drawn
        cards = drv.find_elements(By.CSS_SELECTOR, "#clusters .cluster")
        assert len(cards) == 2
        assert "mannschaft" in cards[0].text and "#1" in cards[0].text
        assert len(drv.find_elements(By.CSS_SELECTOR, "#map circle")) == 39

        # the top cluster is selected by default: its 25 members are rows
        rows = drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
        assert len(rows) == 25
        # the hostile sample shows as text, verbatim
        evil = [r for r in rows if "evil" in r.text]
        assert evil and "<script>window.__pwned=1</script>" in evil[0].text
        assert HOSTILE_PROMPT.split(" What")[0] in drv.find_element(By.ID, "rows").text

        # filtering: type into the box, count visible rows
        box = drv.find_element(By.ID, "filter")
        box.send_keys("bad1")            # row ids bad10..bad19
        visible = drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
        assert len(visible) == 10, [v.text[:40] for v in visible]
        assert "10 of 25 rows shown" in drv.find_element(By.ID, "count").text
        box.clear()
        box.send_keys("GEWANN bad2")     # every term must match, case-insensitive: bad20..bad23
        assert len(drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 4
        box.clear()
        box.send_keys("__pwned")
        assert len(drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 1
        box.clear()
        box.send_keys("zzz-no-such-text")
        assert len(drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 0
        box.clear()
        box.send_keys("x")  # clear() does not fire input events; retype then erase
        box.send_keys("\b")

        # selecting the second cluster (click its card) swaps the rows and the SQL shown
        drv.execute_script("arguments[0].click()", cards[1])
        assert len(drv.find_elements(By.CSS_SELECTOR, "#rows tbody tr")) == 12
        assert "cluster_id = 3" in drv.find_element(By.ID, "rows-sql").get_attribute("textContent")
        assert drv.execute_script("return typeof window.__pwned") == "undefined"

        drv.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "report.png"
        drv.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        drv.quit()
