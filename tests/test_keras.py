"""Keras 3 (torch backend) is the judge: our from_keras/keras_weights must match its GRU exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import grukit  # noqa: E402

B, T, I, H = 3, 6, 4, 5


def _keras_run(layer, x: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(layer(x)))


def _keras_gru(reset_after: bool, bidirectional: bool, use_bias: bool = True):
    gru = keras.layers.GRU(H, return_sequences=True, reset_after=reset_after, use_bias=use_bias)
    layer = keras.layers.Bidirectional(gru) if bidirectional else gru
    layer.build((None, T, I))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in layer.get_weights()])
    return layer


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_from_keras_matches_keras_outputs(reset_after, bidirectional, use_bias):
    layer = _keras_gru(reset_after, bidirectional, use_bias)
    x = np.random.default_rng(1).normal(size=(B, T, I)).astype("float32")
    ours = grukit.GRU.from_keras(layer.get_weights(), **({} if use_bias else {"reset_after": reset_after}))
    assert ours.reset_after == reset_after
    assert ours.bidirectional == bidirectional and ours.batch_first
    got = ours(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(got, _keras_run(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_keras_weights_round_trip(reset_after, bidirectional):
    ours = grukit.GRU(I, H, batch_first=True, bidirectional=bidirectional, reset_after=reset_after)
    layer = _keras_gru(reset_after, bidirectional)
    layer.set_weights(ours.keras_weights())
    x = np.random.default_rng(2).normal(size=(B, T, I)).astype("float32")
    np.testing.assert_allclose(
        _keras_run(layer, x), ours(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-5, atol=1e-5
    )
    back = grukit.GRU.from_keras(layer.get_weights())
    torch.testing.assert_close(back(torch.from_numpy(x))[0], ours(torch.from_numpy(x))[0], rtol=1e-6, atol=1e-6)
    if reset_after:  # reset_after=False folds b_hh into Keras's single bias, so only outputs survive
        for name, p in ours.named_parameters():
            torch.testing.assert_close(getattr(back, name), p, rtol=0, atol=0)


def test_reset_after_read_from_bias_shape():
    w = [np.zeros((I, 3 * H)), np.zeros((H, 3 * H))]

    assert grukit.GRU.from_keras(w + [np.zeros((2, 3 * H))]).reset_after is True
    assert grukit.GRU.from_keras(w + [np.zeros((3 * H,))]).reset_after is False


@pytest.mark.parametrize(
    "weights,match",
    [
        ([np.zeros((I, 3 * H))], "2 or 3 arrays"),
        ([np.zeros((I, 7)), np.zeros((H, 3 * H))], r"kernel must have shape \(I, 3H\)"),
        ([np.zeros((I, 3 * H)), np.zeros((H + 1, 3 * H))], "recurrent_kernel"),
        ([np.zeros((I, 3 * H)), np.zeros((H, 3 * H)), np.zeros((4, 3 * H))], "bias must have shape"),
    ],
)
def test_from_keras_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        grukit.GRU.from_keras(weights)


def test_no_bias_needs_explicit_convention():
    w = [np.zeros((I, 3 * H)), np.zeros((H, 3 * H))]
    with pytest.raises(ValueError, match="no bias, so reset_after cannot be read"):
        grukit.GRU.from_keras(w)
    assert grukit.GRU.from_keras(w, reset_after=False).reset_after is False
    with pytest.raises(ValueError, match="contradicts the Keras bias shape"):
        grukit.GRU.from_keras(w + [np.zeros((3 * H,))], reset_after=True)


def test_keras_weights_needs_one_layer():
    with pytest.raises(ValueError, match="num_layers=2"):
        grukit.GRU(I, H, num_layers=2).keras_weights()
