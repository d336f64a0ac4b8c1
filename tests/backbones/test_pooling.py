"""`pool`: hidden states to one vector per example, on either padding side."""

import keras
import numpy as np
import pytest
from conftest import tiny_bert, tiny_gpt2_lm

from tf_prompt_tuning.backbones.pooling import POOLINGS, check_pooling, is_causal, pool

SEQUENCE = np.arange(2 * 4 * 3, dtype="float32").reshape(2, 4, 3)


@pytest.mark.parametrize(
    "pooling, expected",
    [("mean", [[3.0, 4.0, 5.0], [19.5, 20.5, 21.5]]), ("cls", [[0.0, 1.0, 2.0], [12.0, 13.0, 14.0]]),
     ("last", [[6.0, 7.0, 8.0], [21.0, 22.0, 23.0]])],
)  # fmt: skip
def test_each_mode_reads_only_real_positions_on_either_padding_side(pooling, expected):
    mask = np.array([[1, 1, 1, 0], [0, 0, 1, 1]])  # right- and left-padded rows
    got = keras.ops.convert_to_numpy(pool(SEQUENCE, mask, pooling))
    if pooling == "cls":
        expected = SEQUENCE[:, 0]  # the first position, whatever the padding
    np.testing.assert_allclose(got, expected)


def test_cls_on_a_decoder_is_refused_and_the_others_pass():
    assert is_causal(tiny_gpt2_lm()) and not is_causal(tiny_bert())
    assert [check_pooling(p, tiny_bert()) for p in POOLINGS] == list(POOLINGS)
    with pytest.raises(ValueError, match=r"`pooling='cls'` reads the first position.*Use pooling='last'"):
        check_pooling("cls", tiny_gpt2_lm())
    with pytest.raises(ValueError, match=r"`pooling` must be one of \('mean', 'cls', 'last'\). Received: pooling='max'"):
        check_pooling("max", tiny_bert())
