"""Open a study report in headless Chromium (no Jupyter server) and save a screenshot of it.

    python benchmarks/report_screenshot.py reports/default/index.html --out /tmp/index.png

Needs Debian's `chromium` (`apt-get install chromium`). Exits non-zero when the page cannot be rendered.
"""
import argparse, shutil, subprocess, sys, tempfile, time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

def screenshot(report: Path, out: Path, width: int, height: int) -> float:
    "Render `report` to the PNG `out` with headless Chromium; return the seconds it took."
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None: sys.exit("chromium not found: install Debian's package (apt-get install chromium)")
    if not report.is_file(): sys.exit(f"report {report} does not exist: run `make study` first")
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out}", report.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    if not out.is_file() or out.stat().st_size < 10_000: sys.exit(f"chromium wrote no usable screenshot of {report}")
    return time.perf_counter() - t

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, nargs="?", default=Path("reports/default/index.html"))
    ap.add_argument("--out", type=Path, default=Path("report.png"))
    ap.add_argument("--width", type=int, default=1300)
    ap.add_argument("--height", type=int, default=3200)
    a = ap.parse_args()
    secs = screenshot(a.report, a.out, a.width, a.height)
    print(f"{a.report} ({a.report.stat().st_size / 1e6:.1f} MB) rendered to {a.out} in {secs:.1f} s")
