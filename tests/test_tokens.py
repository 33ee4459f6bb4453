"""Counting prompt tokens with a variant's own CLIP tokenizer, without Django or a database."""

from __future__ import annotations

import json
import shutil

from transformers import CLIPTokenizer

from generation.tokens import CLIP_MAX_TOKENS, token_counter_for, token_limit_for, token_rule_for


def test_tokens_are_counted_with_the_start_and_end_tokens(tiny_model):
    count = token_counter_for(str(tiny_model.base))
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_model.base / "tokenizer"))
    prompt = "a plate of idli and sambar on a banana leaf"
    assert count is not None
    assert count(prompt) == len(tokenizer(prompt)["input_ids"])
    assert count("") == 2
    # The words are really known: an unknown-token tokenizer would count one per word.
    assert count(prompt) > len(prompt.split()) + 2


def test_a_checkpoint_without_a_local_tokenizer_has_no_counter(tmp_path):
    assert token_counter_for("stabilityai/stable-diffusion-2-1") is None
    assert token_counter_for(str(tmp_path)) is None
    assert token_limit_for(str(tmp_path)) is None


def test_the_rule_takes_the_smallest_limit_and_the_longest_count(tiny_model, tmp_path):
    shorter = tmp_path / "short-encoder"
    shutil.copytree(tiny_model.base / "tokenizer", shorter / "tokenizer")
    config_path = shorter / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "model_max_length": 20}))

    rule = token_rule_for([str(tiny_model.base), str(shorter), "some/hub-id"])

    assert token_limit_for(str(tiny_model.base)) == CLIP_MAX_TOKENS
    assert rule.max_tokens == 20
    assert rule.unchecked == ("some/hub-id",)
    assert rule.count is not None
    assert rule.count("a hanok") == token_counter_for(str(tiny_model.base))("a hanok")


def test_a_rule_with_no_local_tokenizer_checks_nothing():
    rule = token_rule_for(["some/hub-id", "some/hub-id"])
    assert rule.count is None
    assert rule.unchecked == ("some/hub-id",)
