"""Open an ``frvt report`` page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
and write a full-page PNG screenshot; print console errors and undecoded images.

Usage::

    python scripts/report_screenshot.py report.html docs/report.png [--width 1200]
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import open_page, page_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--max-height", type=int, default=20000)
    ap.add_argument("--start", default=None, help="section id the picture starts at (default: the top)")
    ap.add_argument("--stop", default=None, help="section id the picture stops before (default: the bottom)")
    args = ap.parse_args()
    with open_page(args.page, args.width) as driver:
        facts = page_facts(driver)
        top_of = "return document.getElementById(arguments[0]).getBoundingClientRect().top + window.scrollY"
        total = int(driver.execute_script("return document.documentElement.scrollHeight"))
        y0 = int(driver.execute_script(top_of, args.start)) if args.start else 0
        y1 = int(driver.execute_script(top_of, args.stop)) if args.stop else total
        height = min(y1 - y0, args.max_height)
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": y0, "width": args.width, "height": height, "scale": 1},
            },
        )
    args.png.parent.mkdir(parents=True, exist_ok=True)
    args.png.write_bytes(base64.b64decode(shot["data"]))
    print(
        f"sections {facts['sections']}, images {facts['n_images']} (undecoded {facts['undecoded']}), "
        f"console errors {facts['errors']}"
    )
    print(f"wrote {args.png} ({args.width}x{height})")


if __name__ == "__main__":
    main()
