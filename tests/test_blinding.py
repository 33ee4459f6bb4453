"""Blinding: nothing a rater can reach tells which model made which image.

Many pairs are served through the test client to several raters, half of them as rate.js
does (each vote answered with the next pair as JSON), and every response a rater can get
(pages, JSON answers, redirects, refusals, image responses with their bytes and headers, the
static files, the staff pages they are refused) is searched for every variant name, role word,
seed, fingerprint and model path. Which image goes left, and the order of prefetched images,
must be a coin toss.

Every image is served as the encoding of its pixels alone (no metadata, nothing per model),
padded with a chunk decoders skip so that both images of a pair have the same length, both in
the same format, with the same headers, under a URL of the impression (never the stored name).
tests/test_blinding_adversarial.py goes further: a rater who builds classifiers from all this.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from generation.image_files import content_name, encode_png, encode_webp
from generation.models import Image, ModelVariant, Prompt, PromptBatch
from generation.rendering.services import image_file_store, pairs_form
from ratings.models import Assignment, AssignmentKind, Cohort, Pair
from tests.conftest import _rater
from tests.rating_pages import (
    SCREEN_ANSWERS,
    client_for,
    completion_route,  # noqa: F401  (a fixture)
    form_answers,
    image_of,
    image_urls,
    prefetch_urls,
    served_assignment_id,
)

RATERS = 10
PAIRS = 52  # each rater skips one, votes on 40, and spends a few on identical checks
QUOTA = 40
SEED_BASE = 3_907_000_000  # ten digits: never found by chance inside a hash or a token
ROLE_WORDS = re.compile(
    rb"(?<![a-z])(base|finetuned|fine-tuned|fine_tuned|lora|variant|checkpoint|shown_left)"
    rb"(?![a-z])",
    re.IGNORECASE,
)
# CSRF and session tokens are random letters and digits drawn afresh for every response; one in
# a few hundred thousand pages spells "BASE" or "lora" between two digits by chance. They carry
# nothing about a model, so they are blanked before the search instead of failing it at random.
RANDOM_TOKENS = re.compile(
    rb"(?P<key>csrfmiddlewaretoken\" value=\"|csrftoken=|sessionid=)[A-Za-z0-9]+"
)


def _without_random_tokens(data: bytes) -> bytes:
    return RANDOM_TOKENS.sub(rb"\g<key>TOKEN", data)


# The bytes each stored image name must be served as: the encoding of its pixels alone.
CLEAN_BYTES: dict[str, bytes] = {}


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 12
    while at < len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        chunks.append((data[at : at + 4], data[at + 8 : at + 8 + size]))
        at += 8 + size + size % 2
    return chunks


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + size]))
        at += 12 + size
    return chunks


def served_as_clean(data: bytes, clean: bytes) -> bool:
    """Whether served bytes are the clean encoding with nothing added but a header and padding.

    WebP: the same image chunk as the clean file, after a VP8X header with no metadata flags
    and before one padding chunk of zeros. PNG: the clean file's chunks, and padding of zeros.
    """
    if data[:4] == b"RIFF":
        served, original = _riff_chunks(data), _riff_chunks(clean)
        (image,) = [chunk for chunk in original if chunk[0] in (b"VP8 ", b"VP8L")]
        header, *rest = served
        return (
            header[0] == b"VP8X"
            and header[1][0] & ~0x10 == 0  # no ICC, EXIF, XMP or animation flags
            and rest[0] == image
            and [tag for tag, _ in rest[1:]] == [b"PADD"]
            and not rest[1][1].strip(b"\0")
        )
    served = [chunk for chunk in _png_chunks(data) if chunk[0] != b"ppAd"]
    padding = [body for tag, body in _png_chunks(data) if tag == b"ppAd"]
    return served == _png_chunks(clean) and all(not body.strip(b"\0") for body in padding)


@pytest.fixture
def blind_pairs(study, variants, media_root) -> list[Pair]:
    """Pairs whose images are stored as the render task stores them, with traps in them.

    Each picture carries the model's name, role, seed and paths in its metadata (as a careless
    pipeline might), and the base's files are an hour older than the fine-tuned ones (variants
    render one after the other): neither may reach a rater. Pixels are noise of a size drawn
    per picture, so file lengths vary with the pictures, whatever made them.
    """
    CLEAN_BYTES.clear()
    noise = random.Random(4)
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    batch.variants.set(variants)
    india = Cohort.objects.get(path="india")
    for variant in variants:
        variant.fingerprint = hashlib.sha256(variant.name.encode()).hexdigest()
        variant.save(update_fields=["fingerprint"])
    rendered_at = time.time() - 86_400
    pairs = []
    for n in range(PAIRS):
        prompt = Prompt.objects.create(
            batch=batch, text=f"a street market at dusk, scene {n}", cohort=india
        )
        seed = SEED_BASE + n
        for order, variant in enumerate(variants):
            picture = PILImage.new("RGB", (24, 24), (n * 5 % 256, 60 + order * 90, 120))
            for _ in range(noise.randrange(0, 200)):
                xy = (noise.randrange(24), noise.randrange(24))
                picture.putpixel(xy, tuple(noise.randrange(256) for _ in range(3)))
            pixels = PILImage.frombytes(picture.mode, picture.size, picture.tobytes())
            picture.info["parameters"] = (
                f"{variant.name} {variant.role} seed {seed} "
                f"{variant.base_checkpoint} {variant.lora_path}"
            )
            png, webp = encode_png(picture), encode_webp(picture)
            file_name = image_file_store(data=png, name=content_name(png, ".png"))
            preview_name = image_file_store(data=webp, name=content_name(webp, ".webp"))
            CLEAN_BYTES[Path(file_name).name] = encode_png(pixels)
            CLEAN_BYTES[Path(preview_name).name] = encode_webp(pixels)
            for name in (file_name, preview_name):
                stamp = rendered_at + n * 60 + order * 3600
                os.utime(media_root / name, (stamp, stamp))
            Image.objects.create(
                prompt=prompt,
                variant=variant,
                seed=seed,
                status=Image.Status.DONE,
                file=file_name,
                preview=preview_name,
                fingerprint=variant.fingerprint,
            )
        pairs.extend(pairs_form(prompt=prompt))
    return pairs


def _secrets(pairs: list[Pair]) -> list[bytes]:
    words = set()
    for variant in ModelVariant.objects.all():
        words |= {variant.name, variant.base_checkpoint, variant.lora_path, variant.fingerprint}
        words |= {Path(variant.lora_path).name} if variant.lora_path else set()
    words |= {image.fingerprint for image in Image.objects.all()}
    return sorted(word.encode() for word in words if word)


class Leaks:
    """Search everything a rater receives; remember what was searched."""

    def __init__(self, pairs: list[Pair]) -> None:
        self.words = _secrets(pairs)
        self.seeds = [
            re.compile(rb"(?<![0-9])" + str(pair.seed).encode() + rb"(?![0-9])") for pair in pairs
        ]
        self.searched = 0

    def search(self, where: str, data: bytes) -> None:
        self.searched += 1
        data = _without_random_tokens(data)
        lowered = data.lower()
        for word in self.words:
            assert word.lower() not in lowered, f"{word!r} in {where}"
        match = ROLE_WORDS.search(data)
        assert match is None, f"{match.group(0)!r} in {where}"
        for seed in self.seeds:
            assert seed.search(data) is None, f"seed {seed.pattern!r} in {where}"

    def response(self, where: str, response) -> bytes:
        headers = "\n".join(f"{key}: {value}" for key, value in response.items()).encode()
        self.search(f"headers of {where}", headers)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.search(where, body)
        return body


@pytest.mark.usefixtures("completion_route")
def test_nothing_a_rater_can_reach_names_a_model_and_sides_are_a_coin_toss(study, blind_pairs):
    type(study).objects.filter(pk=study.pk).update(
        raters_per_pair=RATERS,
        pairs_per_rater=QUOTA,
        min_seconds_per_pair=0,
        attention_check_rate=0.1,
    )
    role_of: dict[str, str] = {}

    def roles(urls: list[str]) -> None:
        for url in urls:
            role_of[url] = image_of(url).variant.role

    leaks = Leaks(blind_pairs)
    rate = reverse("ratings:rate", args=["test-study"])
    vote = reverse("ratings:vote", args=["test-study"])
    image_headers: dict[str, dict[str, str]] = {}
    image_bodies: dict[str, bytes] = {}
    impressions = base_left = prefetched = base_prefetched_first = checks = 0
    answers_searched = 0

    def fetch_images(client: Client, urls: list[str]) -> None:
        for url in urls:
            if url not in image_headers:
                response = client.get(url)
                assert response.status_code == 200, url
                data = leaks.response(f"image {url}", response)
                assert data[:4] in (b"RIFF", b"\x89PNG")
                # The bytes are the encoding of the pixels alone, padded: nothing any model
                # added to it, and no stored name.
                stored = Path(image_of(url).preview.name or image_of(url).file.name).name
                assert served_as_clean(data, CLEAN_BYTES[stored]), url
                image_headers[url] = dict(response.items())
                image_bodies[url] = data

    for number in range(RATERS):
        rater = _rater(f"blind-{number}", "india")
        client = client_for(rater)
        # Half the raters go as rate.js does: the page once, then each vote (or skip) answered
        # with the next pair as JSON; the other half as a browser without script.
        scripted = number % 2 == 1
        skipped = False
        answer: dict | None = None
        while True:
            if answer is not None and "assignment" in answer:
                assignment_id = answer["assignment"]
                left, right = answer["images"]
                upcoming = answer["prefetch"]
            else:
                # The page: at first, after a vote without script, or where an answer sends.
                response = client.get(answer["redirect"] if answer else rate)
                page = leaks.response("a rater's page", response)
                if response.status_code == 302:
                    leaks.response("the completion page", client.get(response.url))
                    break
                assert response.status_code == 200
                if answer is not None and answer["redirect"] != rate:
                    break  # the completion page itself, searched above
                text = page.decode()
                assignment_id = served_assignment_id(text)
                left, right = image_urls(text)
                upcoming = prefetch_urls(text)
            assignment = Assignment.objects.select_related("pair").get(pk=assignment_id)
            roles([left, right, *upcoming])
            fetch_images(client, [left, right, *upcoming])
            # One length for both images of a pair, whatever their pictures.
            assert len(image_bodies[left]) == len(image_bodies[right])
            if assignment.kind == AssignmentKind.PAIR:
                impressions += 1
                base_left += role_of[left] == "base"
                assert {role_of[left], role_of[right]} == {"base", "finetuned"}
            else:
                checks += 1
            if len(upcoming) == 2:
                prefetched += 1
                base_prefetched_first += role_of[upcoming[0]] == "base"
            headers = {"HTTP_ACCEPT": "application/json"} if scripted else {}
            if not skipped:
                skipped = True
                response = client.post(
                    reverse("ratings:skip", args=["test-study"]),
                    {"assignment": assignment.pk, "reason": "unfamiliar"},
                    **headers,
                )
            else:
                data = {"assignment": assignment.pk, **form_answers(SCREEN_ANSWERS)}
                response = client.post(vote, data, **headers)
                if impressions % 97 == 0:
                    leaks.response("a vote sent twice", client.post(vote, data, **headers))
            body = leaks.response("a vote or skip", response)
            if scripted:
                assert response.status_code == 200
                answer = json.loads(body)
                answers_searched += 1
            else:
                assert response.status_code == 302

    assert impressions >= RATERS * QUOTA
    assert checks > 0  # attention checks were served and searched too
    assert answers_searched >= RATERS // 2 * QUOTA  # the JSON answers were searched too
    assert 0.4 <= base_left / impressions <= 0.6, (base_left, impressions)
    assert prefetched > 300
    assert 0.4 <= base_prefetched_first / prefetched <= 0.6, (base_prefetched_first, prefetched)

    assert set(role_of.values()) == {"base", "finetuned"}
    # Base and fine-tuned images come with the same headers, but for the length (which is the
    # same within a pair), and no stored name, file time or tag.
    for url, headers in image_headers.items():
        assert "Last-Modified" not in headers and "ETag" not in headers, url
        assert "Content-Disposition" not in headers, url
        assert "/media/" not in url
    by_role = {
        role: {
            tuple(sorted((key, value) for key, value in headers.items() if key != "Content-Length"))
            for url, headers in image_headers.items()
            if role_of.get(url) == role
        }
        for role in ("base", "finetuned")
    }
    assert by_role["base"] == by_role["finetuned"]
    assert len(by_role["base"]) == 1


def test_rater_is_refused_staff_pages_and_they_leak_nothing(study, blind_pairs):
    rater = _rater("curious", "india")
    client = client_for(rater)
    leaks = Leaks(blind_pairs)
    batch = PromptBatch.objects.get()
    for url in [
        "/admin/",
        f"/admin/generation/modelvariant/{ModelVariant.objects.first().pk}/change/",
        reverse("generation:batch_queue"),
        reverse("generation:batch_progress", args=[batch.pk]),
        reverse("generation:api_batch_list"),
        reverse("generation:api_batch_detail", args=[batch.pk]),
        reverse("ratings:export_votes_csv", args=["test-study"]),
        reverse("ratings:rater_overview", args=["test-study"]),
    ]:
        response = client.get(url, follow=False)
        assert response.status_code in (302, 403, 404), url
        leaks.response(url, response)


def test_static_files_of_the_rating_page_name_no_model(blind_pairs):
    leaks = Leaks(blind_pairs)
    for name in ["rate.js", "polyphony.css"]:
        # A CSS property is not a model's variant.
        text = Path(finders.find(name)).read_bytes().replace(b"font-variant-numeric", b"")
        leaks.search(name, text)


def test_the_search_finds_a_planted_leak(study, blind_pairs):
    """The searches above can fail: each kind of secret is found when it is there."""
    leaks = Leaks(blind_pairs)
    pair = blind_pairs[0]
    for planted in [
        f"<p>{pair.variant_b.name}</p>",
        f'<img src="/media/images/{pair.seed}.png">',
        '<div data-model="LoRA">',
        "X-Model: fine-tuned",
        f"{pair.variant_b.lora_path}",
        f"fp={pair.image_a.fingerprint}",
    ]:
        with pytest.raises(AssertionError):
            leaks.search("a planted leak", planted.encode())
    leaks.search("an innocent page", b"<p>Which image better matches the description?</p>")
