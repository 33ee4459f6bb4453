"""Padding cost: what serving both images of a pair at one length adds per image request.

Encodes pairs of 512-pixel pictures as the worker does (WebP for raters, PNG as the original),
then times what the impression view adds to reading the files: padded_length over both files
and pad_to of one. Prints JSON: per-request microseconds (median), and the bytes added
(median and largest share of the file). Pure: no database, no server.

    .venv/bin/python bench/padding.py --pairs 20 --size 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import _support
from PIL import Image

from generation.image_files import encode_png, encode_webp, pad_to, padded_length


def _picture(size: int, seed: int) -> Image.Image:
    noise = Image.effect_noise((size, size), 20 + seed % 50).convert("L")
    gradient = Image.linear_gradient("L").resize((size, size)).rotate(seed * 37 % 360)
    return Image.merge("RGB", (noise, gradient, noise.rotate(90)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    result: dict = {"pairs": options.pairs, "size": options.size, "machine": _support.machine()}
    for name, encode in (("webp", encode_webp), ("png", encode_png)):
        timings, added, shares, sizes = [], [], [], []
        for n in range(options.pairs):
            files = [
                encode(_picture(options.size, 2 * n)),
                encode(_picture(options.size, 2 * n + 1)),
            ]
            for _ in range(options.repeat):
                started = time.perf_counter()
                length = padded_length(files)
                padded = pad_to(files[n % 2], length)
                timings.append(time.perf_counter() - started)
            for data in files:
                sizes.append(len(data))
                added.append(length - len(data))
                shares.append((length - len(data)) / len(data))
            assert len(padded) == length
        result[name] = {
            "median_us_per_request": round(statistics.median(timings) * 1e6, 1),
            "median_file_bytes": statistics.median(sizes),
            "median_bytes_added": statistics.median(added),
            "largest_share_added": round(max(shares), 3),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
