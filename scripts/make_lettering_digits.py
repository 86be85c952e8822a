"""Write generated TUNING handwriting as a custom-digits folder, for `python -m engine adapt`.

Lettering in the tuning fonts and the stroke generator's lettering (tests/support/lettering.py;
with `--fonts tuning more-hands`, each of those font groups its own pictures), plus the varied
set (tests/support/varied_digits.py), of tuning seeds only (1-49: seeds 50-59 are kept for
choosing, scripts/choose_handwriting.py; the held-out fonts and seeds 100-199 are never used
here). Each picture is written as it was generated, so `adapt` prepares it exactly as the
dashboard prepares an upload. Seeded: the same arguments write the same files.

    .venv/bin/python scripts/make_lettering_digits.py --out /tmp/lettering-digits
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.choose_handwriting import LETTERING_SEEDS, VARIED_SEEDS  # noqa: E402
from scripts.measure_varied import generated  # noqa: E402
from tests.support.lettering import (FONT_PACKAGES, FONTS, MORE_FONT_PACKAGES,  # noqa: E402
                                     available_fonts)

# Fonts a fine-tune may learn from: never the held-out ones, nor "validation", which chooses.
TRAINING_FONTS = ("tuning", "more-hands")

CHOICE_SEEDS = set(LETTERING_SEEDS) | set(VARIED_SEEDS)   # kept for choosing, never trained on


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to (re)write")
    parser.add_argument("--lettering-seeds", type=int, nargs=2, default=[1, 30],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--varied-seeds", type=int, nargs=2, default=[1, 6],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--per-digit", type=int, default=8)
    parser.add_argument("--fonts", nargs="+", default=["tuning"], choices=TRAINING_FONTS,
                        help="font groups of the lettering, each with its own seeds' pictures")
    args = parser.parse_args()
    missing = [f"{group}: {name}" for group in args.fonts
               for name in sorted(set(FONTS[group]) - set(available_fonts(group)))]
    if missing:
        # A silent fallback to fewer fonts would write another set under the same command.
        print(f"fonts not installed ({', '.join(missing)}); apt-get install "
              f"{FONT_PACKAGES} {MORE_FONT_PACKAGES}", file=sys.stderr)
        return 1
    chosen = {which: range(first, last + 1) for which, (first, last) in
              (("lettering", args.lettering_seeds), ("varied", args.varied_seeds))}
    for which, seeds in chosen.items():
        if seeds.start < 1 or seeds.stop > 100 or set(seeds) & CHOICE_SEEDS:
            parser.error(f"--{which}-seeds must be tuning seeds (1-99) outside "
                         f"{min(CHOICE_SEEDS)}-{max(CHOICE_SEEDS)}")
    if args.out.exists():
        shutil.rmtree(args.out)
    count = 0
    for which, seeds in chosen.items():
        # One seed at a time: a seed's pictures (photos up to 1,500 px) are a few hundred MB.
        for sample in (sample for seed in seeds
                       for fonts in (args.fonts if which == "lettering" else ["tuning"])
                       for sample in generated(which, [seed], args.per_digit, fonts)):
            folder = args.out / str(sample.label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sample.picture).save(folder / f"{which}-{count:05d}.png")
            count += 1
    (args.out / "made-by.json").write_text(json.dumps(
        {"command": " ".join(["python", "scripts/make_lettering_digits.py", *sys.argv[1:]]),
         "pictures": count}, indent=1))
    print(f"{count} pictures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
