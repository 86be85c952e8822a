"""Fill a custom-digits folder by drawing digits with the mouse on the dashboard's own
canvas, the way a person would: scripted handwriting (tests/support/handwriting.py) in several
styles and hands, labelled with the Draw page's select box and saved with its button.

    python -m tests.support.seed_custom_digits --out custom_digits --per-digit 12

It starts its own server (on a temporary folder) and copies what the app saved into
`--out/<label>/`, with a manifest of who drew what. It is a tool, not a test.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.e2e.moves import clear_canvas, save_with_label, set_stroke_width, shown_prediction
from tests.support.handwriting import STYLES, Hand, digit_strokes, random_hand
from tests.support.liveserver import (CANVAS_SELECTOR, draw_strokes, launch_chromium, open_page,
                                      streamlit_server)

CANVAS_PX = 280
DEFAULT_STROKE_PX = 18          # the Draw page's slider default
MANIFEST = "manifest.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("custom_digits"))
    parser.add_argument("--per-digit", type=int, default=12)
    parser.add_argument("--writers", type=int, default=8, help="how many different hands")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    hands = [random_hand(rng) for _ in range(args.writers)]
    plan = [(digit, sorted(STYLES[digit])[number % len(STYLES[digit])],
             (digit + number * 3) % args.writers)
            for digit in range(10) for number in range(args.per_digit)]
    with tempfile.TemporaryDirectory() as saved_dir:
        rows = _draw_all(plan, hands, rng, Path(saved_dir))
        _copy_out(Path(saved_dir), args.out, rows)
    read_right = sum(row["predicted"] == row["label"] for row in rows)
    print(f"saved {len(rows)} digits into {args.out}/; the app's model read {read_right} "
          f"of them right")
    return 0


def _draw_all(plan: list[tuple[int, str, int]], hands: list[Hand],
              rng: np.random.Generator, saved_dir: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    with streamlit_server({"DIGIT_LAB_CUSTOM_DIR": str(saved_dir)}) as server, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        open_page(page, f"{server.url}/draw")
        page.locator(CANVAS_SELECTOR).wait_for()
        for digit, style, writer in plan:
            hand = hands[writer]
            # Two of three digits keep the slider's default width, like most visitors.
            width_px = DEFAULT_STROKE_PX if rng.random() < 0.66 else \
                int(np.clip(round(hand.width * CANVAS_PX), 6, 40))
            set_stroke_width(page, width_px)
            draw_strokes(page, digit_strokes(digit, rng, style, hand))
            predicted = shown_prediction(page)
            saved_as = save_with_label(page, digit)
            clear_canvas(page)
            rows.append({"file": saved_as, "label": digit, "style": style, "writer": writer,
                         "stroke_px": width_px, "predicted": predicted})
            print(f"{digit} {style:<11} writer {writer} {width_px:2d} px -> read as "
                  f"{predicted}, saved {saved_as}", flush=True)
        browser.close()
    return rows


def _copy_out(saved_dir: Path, out: Path, rows: list[dict]) -> None:
    """Each file, then the manifest (what earlier runs drew, plus these rows), each written
    to a temporary name in its folder and renamed into place."""
    for row in rows:
        target = out / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(saved_dir / row["file"], temporary)
        os.replace(temporary, target)
    manifest = out / MANIFEST
    earlier = []
    if manifest.exists():
        with open(manifest, newline="") as handle:
            earlier = list(csv.DictReader(handle))
    temporary = manifest.with_name(f".{MANIFEST}.tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(earlier + rows)
    os.replace(temporary, manifest)


if __name__ == "__main__":
    sys.exit(main())
