#!/usr/bin/env python3
"""Opens an evaluation's report.html in a real headless browser and checks what a reader sees.

usage: check_html_report.py REPORT_HTML [--screenshot PNG] [--width 1280]

Checks, in headless Chromium driven through Selenium: the page loads from disk with no console
errors, every <img> (PRO curve, gallery pictures) has loaded and has a size (a missing or
corrupt file shows as width 0), and the gallery holds at least one test image. With --screenshot, writes a PNG of the whole page (the window is resized to the
page's height). Exit status 0 when everything holds, 1 with the problems listed otherwise,
2 when no browser is available (Chromium and ChromeDriver: `apt-get install chromium
chromium-driver`; Selenium: `pip install selenium`).
"""
import argparse
import os
import shutil
import sys


def browser(width):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        return None, "no Chromium/ChromeDriver on PATH (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("--screenshot")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    path = os.path.abspath(args.report)
    if not os.path.isfile(path):
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    driver, why = browser(args.width)
    if driver is None:
        print(f"skipping: {why}", file=sys.stderr)
        return 2
    problems = []
    try:
        driver.get("file://" + path)
        # Wait for every image to settle (loaded or failed) before reading their sizes.
        driver.set_script_timeout(30)
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all([...document.images].map(i => i.complete ? 0 :"
            " new Promise(r => { i.onload = r; i.onerror = r; }))).then(() => done());")
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth,"
            " i.naturalHeight, i.getBoundingClientRect().width]);")
        if not images:
            problems.append("the page shows no image")
        for src, w, h, shown in images:
            if w == 0 or h == 0:
                problems.append(f"{src}: did not load")
            elif shown == 0:
                problems.append(f"{src}: loaded but not displayed")
        gallery = driver.execute_script(
            "return document.querySelectorAll('.gallery .entry').length;")
        if gallery == 0:
            problems.append("the gallery is empty")
        title = driver.title
        if not title:
            problems.append("the page has no title")
        for entry in driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                problems.append(f"console: {entry.get('message')}")
        print(f"{path}: title {title!r}, {len(images)} images, {gallery} gallery entries")
        if args.screenshot:
            height = driver.execute_script("return document.documentElement.scrollHeight;")
            driver.set_window_size(args.width, min(max(height, 600), 16000))
            driver.save_screenshot(args.screenshot)
            print(f"screenshot: {args.screenshot} ({args.width}x{min(max(height, 600), 16000)})")
    finally:
        driver.quit()
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
