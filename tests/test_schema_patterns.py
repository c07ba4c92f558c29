"""The OpenAPI patterns for title and description accept exactly what the validators accept."""

from __future__ import annotations

import random
import re

import pytest
from pydantic import ValidationError

from app.schemas import DESCRIPTION_MAX_LENGTH, DESCRIPTION_PATTERN, TITLE_PATTERN, ItemIn

# Characters around the edges of the rules: whitespace of every kind, controls, letters.
ALPHABET = [" ", "\t", "\n", "\r", "\x0b", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "\x00", "\x1b", "\x7f"]
ALPHABET += ["a", "é", "中", "🚀", "\u202e", "\ufeff", "-"]


def _accepted(**fields: str) -> bool:
    try:
        ItemIn.model_validate({"title": "t", **fields})
    except ValidationError:
        return False
    return True


def _samples(seed: int, count: int, max_length: int) -> list[str]:
    rng = random.Random(seed)
    samples = [""]
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, max_length - 1, max_length, max_length + 1, max_length + 3])
        samples.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    return samples


@pytest.mark.parametrize("seed", range(5))
def test_the_title_pattern_matches_the_title_validator(seed: int) -> None:
    pattern = re.compile(TITLE_PATTERN)
    for text in _samples(seed, 400, 200):
        assert bool(pattern.fullmatch(text)) == _accepted(title=text), repr(text)


@pytest.mark.parametrize("seed", range(3))
def test_the_description_pattern_matches_the_description_validator(seed: int) -> None:
    pattern = re.compile(DESCRIPTION_PATTERN)
    for text in _samples(seed, 200, DESCRIPTION_MAX_LENGTH):
        documented = bool(pattern.fullmatch(text)) and len(text) <= DESCRIPTION_MAX_LENGTH
        assert documented == _accepted(description=text), repr(text[:40])
