"""Padding: both images of a pair are served at one length, with pixels unchanged.

The padding is a chunk decoders skip (WebP: the extended format and an unknown chunk; PNG: a
private ancillary chunk). Pillow and Chromium must decode a padded file to the same pixels as
the file as stored.
"""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from generation.image_files import PAD_QUANTUM, encode_png, encode_webp, pad_to, padded_length


def _picture(width: int, height: int, seed: int) -> Image.Image:
    noise = Image.effect_noise((width, height), 40 + seed % 60).convert("L")
    return Image.merge(
        "RGB", (noise, noise.rotate(90), Image.new("L", (width, height), seed % 256))
    )


def _pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        return picture.size, picture.convert("RGB").tobytes()


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 96),
    height=st.integers(1, 96),
    seeds=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)),
    encode=st.sampled_from([encode_webp, encode_png]),
)
def test_a_padded_pair_has_one_length_and_the_same_pixels(width, height, seeds, encode):
    files = [encode(_picture(width, height, seed)) for seed in seeds]
    length = padded_length(files)
    assert length % PAD_QUANTUM == 0 and length > max(len(data) for data in files)
    for data in files:
        padded = pad_to(data, length)
        assert len(padded) == length
        assert _pixels(padded) == _pixels(data)  # Pillow decodes the same pixels
        assert padded[:4] == data[:4]


def test_padding_refuses_a_length_it_cannot_reach():
    data = encode_webp(_picture(16, 16, 1))
    with pytest.raises(ValueError, match="cannot pad"):
        pad_to(data, len(data))
    with pytest.raises(ValueError, match="neither"):
        pad_to(b"GIF89a" + bytes(40), 1024)


@pytest.mark.browser
def test_chromium_draws_a_padded_file_as_the_file_itself(browser):
    """Both renditions, padded and not, drawn on a canvas by Chromium: the same pixels."""
    page = browser.new_page()
    try:
        for encode, kind in ((encode_webp, "webp"), (encode_png, "png")):
            data = encode(_picture(48, 40, 7))
            padded = pad_to(data, padded_length([data, encode(_picture(48, 40, 8))]))
            assert len(padded) > len(data)
            drawn = []
            for body in (data, padded):
                url = f"data:image/{kind};base64,{base64.b64encode(body).decode()}"
                drawn.append(
                    page.evaluate(
                        """async (url) => {
                            const image = new Image();
                            image.src = url;
                            await image.decode();
                            const canvas = document.createElement("canvas");
                            canvas.width = image.naturalWidth;
                            canvas.height = image.naturalHeight;
                            const context = canvas.getContext("2d");
                            context.drawImage(image, 0, 0);
                            const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
                            return [canvas.width, canvas.height, Array.from(pixels.data)];
                        }""",
                        url,
                    )
                )
            assert drawn[0][:2] == [48, 40]
            assert drawn[1] == drawn[0], kind
    finally:
        page.close()
