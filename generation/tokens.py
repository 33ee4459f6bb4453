"""Count a prompt's tokens the way a variant's text encoder will read them.

Pure code: only the CLIP tokenizer of a local diffusers folder is loaded (never the model), so
the web process can refuse a prompt the encoder would silently cut, before anything is queued.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIP_MAX_TOKENS = 77


class TokenizerUnavailable(Exception):
    """A checkpoint's tokenizer folder exists but cannot be loaded."""


@dataclass(frozen=True)
class TokenRule:
    """How to count a prompt's tokens for a set of checkpoints, and how many they all read."""

    count: Callable[[str], int] | None
    max_tokens: int
    # Checkpoints with no local tokenizer (hub ids on an offline host): their prompts go unchecked.
    unchecked: tuple[str, ...] = ()


# Loaded once per process and path: a CLIP tokenizer takes a second to read. A folder that
# appears later is only seen after a restart, which is how model folders are installed anyway.
@functools.lru_cache(maxsize=16)
def _tokenizer(base_checkpoint: str) -> Any | None:
    folder = Path(base_checkpoint) / "tokenizer"
    if not folder.is_dir():
        return None
    from transformers import CLIPTokenizer  # heavy; only needed once a folder exists

    try:
        # from_pretrained, never CLIPTokenizer(vocab_file=...): in transformers 5 the latter
        # silently maps every word to the unknown token.
        return CLIPTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise TokenizerUnavailable(f"Cannot load the tokenizer in {folder}: {exc}") from exc


def token_counter_for(base_checkpoint: str) -> Callable[[str], int] | None:
    """Return a function counting a prompt's tokens, start and end tokens included.

    Return None when the checkpoint has no local tokenizer folder (a hub id on an offline host).
    """
    tokenizer = _tokenizer(base_checkpoint)
    if tokenizer is None:
        return None

    def count(text: str) -> int:
        # verbose=False: an over-long prompt is what we are measuring, not a reason to warn.
        return len(tokenizer(text, verbose=False)["input_ids"])

    return count


def token_limit_for(base_checkpoint: str) -> int | None:
    """Return how many tokens the checkpoint's text encoder reads, or None without a tokenizer."""
    tokenizer = _tokenizer(base_checkpoint)
    if tokenizer is None:
        return None
    limit = int(tokenizer.model_max_length)
    # Tokenizers saved without a length report a huge sentinel; CLIP encoders read 77.
    return limit if 0 < limit < 100_000 else CLIP_MAX_TOKENS


def token_rule_for(base_checkpoints: Iterable[str]) -> TokenRule:
    """Return the strictest token rule of these checkpoints: the longest count, the smallest limit.

    A prompt passes only if every variant's encoder reads all of it.
    """
    counters: list[Callable[[str], int]] = []
    limits: list[int] = []
    unchecked: list[str] = []
    for checkpoint in dict.fromkeys(base_checkpoints):
        counter = token_counter_for(checkpoint)
        limit = token_limit_for(checkpoint)
        if counter is None or limit is None:
            unchecked.append(checkpoint)
            continue
        counters.append(counter)
        limits.append(limit)
    if not counters:
        return TokenRule(count=None, max_tokens=CLIP_MAX_TOKENS, unchecked=tuple(unchecked))

    def count(text: str) -> int:
        return max(counter(text) for counter in counters)

    return TokenRule(
        count=counters[0] if len(counters) == 1 else count,
        max_tokens=min(limits),
        unchecked=tuple(unchecked),
    )
