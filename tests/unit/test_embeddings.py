"""The sentence encoder on the real pinned model (the `embed` extra), a few names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from decay import embeddings as emb
from decay.embeddings import EmbeddingCache, EncoderUnavailable, cosine, load_encoder


@pytest.fixture(scope="module")
def encoder() -> emb.Encoder:
    return load_encoder()


def test_related_names_are_closer_than_unrelated(encoder: emb.Encoder) -> None:
    names = ["running shoes", "trail running", "cookware", "chef knives"]
    v = dict(zip(names, encoder.encode(names), strict=True))
    assert v["running shoes"].shape == (emb.DIMENSION,)
    np.testing.assert_allclose([np.linalg.norm(x) for x in v.values()], 1.0, rtol=1e-5)
    # all-MiniLM-L6-v2's published behaviour, to two decimals, through the int8 export
    assert cosine(v["running shoes"], v["trail running"]) == pytest.approx(0.56, abs=0.02)
    assert cosine(v["cookware"], v["chef knives"]) == pytest.approx(0.58, abs=0.02)
    assert cosine(v["running shoes"], v["cookware"]) == pytest.approx(0.13, abs=0.02)


def test_a_vector_does_not_depend_on_its_batch(encoder: emb.Encoder) -> None:
    texts = ["coffee", "Stainless steel 10-piece cookware set with glass lids", "yoga mats"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    assert encoder.encode([]).shape == (0, emb.DIMENSION)


def test_cache_encodes_each_text_once(encoder: emb.Encoder) -> None:
    cache = EmbeddingCache(encoder)
    first = cache.vectors(["coffee", "tea", "coffee"])
    assert cache.encoded == 2 and len(cache) == 2
    again = cache.vectors(["tea", "coffee"])
    assert cache.encoded == 2
    np.testing.assert_array_equal(again, first[[1, 0]])
    assert cache.vectors([]).shape == (0, emb.DIMENSION)


def test_missing_or_altered_package_is_a_clear_error() -> None:
    absent = dataclasses.replace(emb.MODEL_FILE, distribution="no-such-distribution-x")
    with pytest.raises(EncoderUnavailable, match=r"not installed: install the `embed` extra"):
        emb.pinned_path(absent)
    other = dataclasses.replace(emb.MODEL_FILE, version="0.0.1")
    with pytest.raises(EncoderUnavailable, match=r"pinned to 0\.0\.1"):
        emb.pinned_path(other)
    altered = dataclasses.replace(emb.TOKENIZER_FILE, sha256="0" * 64)
    with pytest.raises(EncoderUnavailable, match="has sha256 be50c362"):
        emb.pinned_path(altered)
