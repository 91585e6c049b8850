"""A real headless Chromium for tests: Debian's ``chromium`` with its ``chromedriver``, driven by
selenium. Nothing is downloaded: the browser and the driver come from the system packages
(``apt-get install chromium chromium-driver``) and selenium's driver manager is bypassed by
naming the driver's path."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def open_page(page: Path, width: int = 1200, height: int = 900):
    """A selenium driver with ``page`` (a local file) loaded; browser logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="frvt-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.get(Path(page).resolve().as_uri())
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_facts(driver) -> dict:
    """Section ids, images (count, those not decoded), console errors, external resources."""
    sections = driver.execute_script("return Array.from(document.querySelectorAll('section')).map(s => s.id)")
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])"
    )
    undecoded = [i for i, (complete, w, _) in enumerate(images) if not complete or w <= 0]
    external = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))"
    )
    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    return {
        "sections": sections,
        "n_images": len(images),
        "undecoded": undecoded,
        "errors": errors,
        "external": external,
        "srcs": [s for _, _, s in images],
    }
