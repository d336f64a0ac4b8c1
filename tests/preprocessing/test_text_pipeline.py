from collections import Counter
from types import SimpleNamespace

import keras_hub
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tf_prompt_tuning.app.datasets import TextDataset
from tf_prompt_tuning.preprocessing.text_pipeline import (
    PAD_TO_MULTIPLE,
    encode_texts,
    make_text_dataset,
)
from tf_prompt_tuning.preprocessing.text_preprocessor import TextPreprocessor

WORDS = ["the", "a", "movie", "film", "was", "is", "very", "really", "good", "bad", "not"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP = 0, 1, 2, 3


def _tokenizer(vocabulary=SPECIALS + WORDS):
    return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)


def _texts(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, n)) for n in lengths]


def _data(lengths, seed=0):
    """One text per length, label = its index, so order and alignment are visible."""
    return TextDataset(tuple(_texts(lengths, seed)), np.arange(len(lengths), dtype="int32"), ())


def _expected_ids(tokenizer, text, sequence_length):
    ids = [int(i) for i in np.asarray(tokenizer(text))][: sequence_length - 2]
    return [CLS] + ids + [SEP]


def _batches(dataset):
    return [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in dataset]


def _examples(batches):
    """(real token ids, label) per example, in dataset order."""
    examples = []
    for features, labels in batches:
        for ids, mask, label in zip(features["token_ids"], features["padding_mask"], labels):
            examples.append((tuple(ids[mask == 1].tolist()), int(label)))
    return examples


@pytest.mark.parametrize(
    "input_names, keys",
    [
        (
            ("token_ids", "padding_mask", "segment_ids"),
            {"token_ids", "padding_mask", "segment_ids"},
        ),
        (("token_ids", "padding_mask"), {"token_ids", "padding_mask"}),
    ],
    ids=["bert_inputs", "no_segment_ids"],
)
def test_output_keys_and_dtypes(input_names, keys):
    dataset = make_text_dataset(
        _data([3, 5, 2]),
        tokenizer=_tokenizer(),
        sequence_length=32,
        batch_size=2,
        input_names=input_names,
    )
    features_spec, label_spec = dataset.element_spec
    assert set(features_spec) == keys
    for name, spec in features_spec.items():
        assert spec.dtype.name == "int32", name
        assert spec.shape.as_list() == [None, None], name
    assert label_spec.dtype.name == "int32"
    for features, labels in _batches(dataset):
        assert set(features) == keys
        assert all(v.dtype == np.int32 for v in features.values())
        assert labels.dtype == np.int32
        if "segment_ids" in features:
            assert not features["segment_ids"].any()
            assert features["segment_ids"].shape == features["token_ids"].shape


@pytest.mark.parametrize("bucket_by_length", [True, False], ids=["bucketed", "in_order"])
def test_examples_are_cls_tokens_sep_then_padding(bucket_by_length):
    tokenizer = _tokenizer()
    lengths = [0, 1, 4, 9, 14, 15, 20, 30]
    data = _data(lengths)
    dataset = make_text_dataset(
        data,
        tokenizer=tokenizer,
        sequence_length=64,
        batch_size=3,
        bucket_by_length=bucket_by_length,
    )
    seen = 0
    for features, labels in _batches(dataset):
        for ids, mask, label in zip(features["token_ids"], features["padding_mask"], labels):
            length = lengths[label] + 2
            np.testing.assert_array_equal(mask, [1] * length + [0] * (len(mask) - length))
            assert ids[0] == CLS and ids[length - 1] == SEP
            assert ids.tolist()[:length] == _expected_ids(tokenizer, data.texts[label], 64)
            assert not ids[length:].any()  # [PAD] is 0
            seen += 1
    assert seen == len(lengths)


def test_unknown_words_become_unk():
    data = TextDataset(("The FILM was zorblax",), np.zeros(1, "int32"), ())
    dataset = make_text_dataset(data, tokenizer=_tokenizer(), sequence_length=8, batch_size=1)
    ((features, _),) = _batches(dataset)
    np.testing.assert_array_equal(features["token_ids"], [[CLS, 5, 8, 9, UNK, SEP, PAD, PAD]])


def test_padding_uses_the_tokenizers_pad_id():
    vocabulary = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"] + WORDS
    data = TextDataset(("the movie", "a very very good film"), np.array([0, 1], "int32"), ())
    dataset = make_text_dataset(
        data, tokenizer=_tokenizer(vocabulary), sequence_length=16, batch_size=2,
        bucket_by_length=False,
    )  # fmt: skip
    ((features, _),) = _batches(dataset)
    np.testing.assert_array_equal(features["token_ids"][0], [1, 5, 7, 2] + [4] * 12)
    np.testing.assert_array_equal(features["padding_mask"][0], [1] * 4 + [0] * 12)
    np.testing.assert_array_equal(features["token_ids"][1][:7], [1, 6, 11, 11, 13, 8, 2])


@pytest.mark.parametrize(
    "lengths, sequence_length, widths",
    [
        ([1, 3], 64, [16]),  # 3 and 5 tokens pad to 16
        ([14, 2], 64, [16]),  # 16 tokens exactly
        ([15, 2], 64, [32]),  # 17 tokens round up to 32
        ([40, 2], 64, [48]),
        ([40, 2], 40, [40]),  # capped at sequence_length
        ([3, 3], 10, [10]),  # a sequence_length below 16 caps every batch
    ],
    ids=["short", "exactly_16", "just_over_16", "round_to_48", "capped", "tiny_cap"],
)
def test_padded_length_is_a_multiple_of_16_capped_at_sequence_length(
    lengths, sequence_length, widths
):
    dataset = make_text_dataset(
        _data(lengths),
        tokenizer=_tokenizer(),
        sequence_length=sequence_length,
        batch_size=2,
        bucket_by_length=False,
    )
    assert [f["token_ids"].shape[1] for f, _ in _batches(dataset)] == widths


@pytest.mark.parametrize("bucket_by_length", [True, False], ids=["bucketed", "in_order"])
def test_every_batch_width_follows_the_rule(bucket_by_length):
    lengths = list(np.random.default_rng(1).integers(0, 60, size=40))
    sequence_length = 50
    dataset = make_text_dataset(
        _data(lengths),
        tokenizer=_tokenizer(),
        sequence_length=sequence_length,
        batch_size=4,
        bucket_by_length=bucket_by_length,
    )
    for features, labels in _batches(dataset):
        longest = min(max(lengths[i] for i in labels) + 2, sequence_length)
        width = features["token_ids"].shape[1]
        assert width == min(-(-longest // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE, sequence_length)
        assert features["padding_mask"].sum(axis=1).max() == longest


def test_bucketing_groups_similar_lengths():
    # Alternating short and long texts: without buckets every batch mixes them.
    lengths = [2, 30] * 8
    dataset = make_text_dataset(
        _data(lengths), tokenizer=_tokenizer(), sequence_length=64, batch_size=4
    )
    batches = _batches(dataset)
    assert sorted(labels.size for _, labels in batches) == [4, 4, 4, 4]
    for features, labels in batches:
        assert len({lengths[i] for i in labels}) == 1
        assert features["token_ids"].shape[1] in (16, 32)


def test_truncation_keeps_cls_and_sep():
    tokenizer = _tokenizer()
    data = _data([50, 3])
    dataset = make_text_dataset(
        data, tokenizer=tokenizer, sequence_length=10, batch_size=2, bucket_by_length=False
    )
    ((features, _),) = _batches(dataset)
    ids = features["token_ids"]
    assert ids.shape == (2, 10)
    assert ids[0].tolist() == _expected_ids(tokenizer, data.texts[0], 10)
    assert ids[0, 0] == CLS and ids[0, -1] == SEP
    assert features["padding_mask"][0].all()
    # The kept tokens are the text's first eight.
    assert ids[0, 1:-1].tolist() == [int(i) for i in np.asarray(tokenizer(data.texts[0]))[:8]]


def test_shortest_sequence_length_keeps_one_token():
    data = _data([5, 0])
    dataset = make_text_dataset(
        data, tokenizer=_tokenizer(), sequence_length=3, batch_size=2, bucket_by_length=False
    )
    ((features, _),) = _batches(dataset)
    assert features["token_ids"].shape == (2, 3)
    assert features["token_ids"][0, 0] == CLS and features["token_ids"][0, 2] == SEP
    np.testing.assert_array_equal(features["token_ids"][1], [CLS, SEP, PAD])
    np.testing.assert_array_equal(features["padding_mask"], [[1, 1, 1], [1, 1, 0]])


def test_in_order_keeps_input_order_and_labels_aligned():
    tokenizer = _tokenizer()
    lengths = [7, 1, 25, 3, 12, 0, 19]
    data = TextDataset(
        tuple(_texts(lengths)), np.array([1, 0, 0, 1, 1, 0, 1], "int32"), ("neg", "pos")
    )
    dataset = make_text_dataset(
        data, tokenizer=tokenizer, sequence_length=32, batch_size=3, bucket_by_length=False
    )
    batches = _batches(dataset)
    assert [labels.size for _, labels in batches] == [3, 3, 1]
    expected = [
        (tuple(_expected_ids(tokenizer, text, 32)), int(label))
        for text, label in zip(data.texts, data.labels)
    ]
    assert _examples(batches) == expected


@pytest.mark.parametrize("bucket_by_length", [True, False], ids=["bucketed", "in_order"])
def test_shuffle_yields_every_example_once_per_epoch(bucket_by_length):
    lengths = list(np.random.default_rng(2).integers(0, 40, size=24))
    data = _data(lengths)
    expected = Counter(
        _examples(
            _batches(
                make_text_dataset(
                    data, tokenizer=_tokenizer(), sequence_length=48, batch_size=5,
                    bucket_by_length=False,
                )  # fmt: skip
            )
        )
    )
    dataset = make_text_dataset(
        data,
        tokenizer=_tokenizer(),
        sequence_length=48,
        batch_size=5,
        shuffle=True,
        seed=3,
        bucket_by_length=bucket_by_length,
    )
    epochs = [_examples(_batches(dataset)) for _ in range(2)]
    for epoch in epochs:
        assert Counter(epoch) == expected
    # Reshuffled each epoch, and not the input order.
    assert epochs[0] != epochs[1]
    assert [label for _, label in epochs[0]] != list(range(len(lengths)))


def test_shuffle_is_seeded():
    data = _data(list(range(20)))

    def first_epoch(seed):
        dataset = make_text_dataset(
            data, tokenizer=_tokenizer(), sequence_length=32, batch_size=4, shuffle=True,
            seed=seed, bucket_by_length=False,
        )  # fmt: skip
        return [label for _, label in _examples(_batches(dataset))]

    assert first_epoch(5) == first_epoch(5)
    assert first_epoch(5) != first_epoch(6)


def test_tokenizer_without_special_tokens():
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=["[PAD]", "[UNK]"] + WORDS, lowercase=True
    )
    data = TextDataset(("the movie", "a"), np.array([0, 1], "int32"), ())
    dataset = make_text_dataset(
        data, tokenizer=tokenizer, sequence_length=1, batch_size=2, bucket_by_length=False
    )
    ((features, _),) = _batches(dataset)
    np.testing.assert_array_equal(features["token_ids"], [[2], [3]])
    np.testing.assert_array_equal(features["padding_mask"], [[1], [1]])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"batch_size": 0},
            ValueError,
            r"`batch_size` must be a positive integer. Received: batch_size=0",
        ),
        ({"batch_size": -4}, ValueError, r"Received: batch_size=-4"),
        ({"batch_size": 2.5}, TypeError, r"Received: batch_size=2.5 \(of type float\)"),
        ({"batch_size": True}, TypeError, r"Received: batch_size=True \(of type bool\)"),
        ({"sequence_length": 0}, ValueError, r"Received: sequence_length=0"),
        ({"sequence_length": "16"}, TypeError, r"Received: sequence_length='16' \(of type str\)"),
        (
            {"sequence_length": 2},
            ValueError,
            r"`sequence_length` must leave room for text after the 2 special tokens: use at least 3. "
            r"Received: sequence_length=2",
        ),
        ({"sequence_length": 1}, ValueError, r"after the 2 special tokens"),
    ],
    ids=[
        "zero_batch",
        "negative_batch",
        "float_batch",
        "bool_batch",
        "zero_length",
        "str_length",
        "length_only_specials",
        "length_below_specials",
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"tokenizer": _tokenizer(), "sequence_length": 16, "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        make_text_dataset(_data([3]), **arguments)


# Texts as users meet them: empty, only whitespace, quotes, tabs, newlines,
# unicode separators and emoji, mixed with the tokenizer's words.
_TEXTS = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from([" ", "\t", "\n", "\r", "\u2028", "\u0085", "\u00a0"]), max_size=4),
        st.text(max_size=12),
        st.lists(st.sampled_from(WORDS + ['"', "'", ",", "\t", "\U0001f600", "é"]), max_size=30).map(" ".join),
    ),
    min_size=1,
    max_size=6,
)


def _rows(features) -> list:
    return [tuple(ids[mask == 1].tolist()) for ids, mask in zip(features["token_ids"], features["padding_mask"])]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=_TEXTS, sequence_length=st.integers(3, 24))
def test_every_text_path_frames_every_text_the_same_way(texts, sequence_length):
    # encode_texts (predict_texts, the export's serve_text), TextPreprocessor
    # (fit/predict on strings) and make_text_dataset, in order and bucketed
    # (the job's training and evaluation), each text alone and in a batch.
    tokenizer = _tokenizer()
    data = SimpleNamespace(texts=texts, labels=np.arange(len(texts)))
    alone = [_rows({k: v.numpy() for k, v in encode_texts(tokenizer, [t], sequence_length).items()})[0] for t in texts]
    for row in alone:
        assert row[0] == CLS and row[-1] == SEP and 2 <= len(row) <= sequence_length
    batched = _rows({k: v.numpy() for k, v in encode_texts(tokenizer, texts, sequence_length).items()})
    preprocessed = _rows({k: v.numpy() for k, v in TextPreprocessor(tokenizer, sequence_length)(texts).items()})
    make = dict(tokenizer=tokenizer, sequence_length=sequence_length, batch_size=4)
    in_order = _examples(_batches(make_text_dataset(data, bucket_by_length=False, **make)))
    bucketed = dict((label, ids) for ids, label in _examples(_batches(make_text_dataset(data, **make))))
    assert batched == preprocessed == alone
    assert [ids for ids, _ in in_order] == alone
    assert [bucketed[i] for i in range(len(texts))] == alone


def test_a_nul_character_is_framed_alike_eagerly_and_in_graphs():
    # Hypothesis found "\x00F": KerasHub's tokenizer reads a graph string
    # only up to its first NUL; the framing drops NULs first, on every path.
    tokenizer = _tokenizer()
    texts = ["\x00F", "good\x00 bad", "\x00"]
    eager = _rows({k: v.numpy() for k, v in encode_texts(tokenizer, texts, 8).items()})
    data = SimpleNamespace(texts=texts, labels=np.arange(3))
    in_data = [ids for ids, _ in _examples(_batches(make_text_dataset(data, tokenizer=tokenizer, sequence_length=8,
                                                                      batch_size=4, bucket_by_length=False)))]
    assert eager == in_data == [(CLS, 1, SEP), (CLS, *eager[1][1:-1], SEP), (CLS, SEP)]
    assert len(eager[1]) == 4  # "good" and "bad", the NUL between them dropped


def test_texts_that_tokenize_to_nothing_still_get_start_and_end():
    inputs = encode_texts(_tokenizer(), ["", "   ", "good"], 8)
    assert inputs["token_ids"].numpy().tolist() == [[CLS, SEP, PAD], [CLS, SEP, PAD], [CLS, 13, SEP]]
    assert inputs["padding_mask"].numpy().tolist() == [[1, 1, 0], [1, 1, 0], [1, 1, 1]]


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
def test_any_integer_labels_in_any_object(dtype):
    data = SimpleNamespace(texts=["good", "bad film"], labels=np.array([1, 0], dtype))
    (_, labels), = _batches(make_text_dataset(data, tokenizer=_tokenizer(), sequence_length=8, batch_size=2,
                                              bucket_by_length=False))
    assert labels.dtype == np.int32 and labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "data, error, match",
    [
        (SimpleNamespace(texts=["a"]), TypeError, r"`data` must have `texts` .* Received: SimpleNamespace"),
        (SimpleNamespace(texts=["a", None], labels=[0, 1]), TypeError,
         r"`data.texts` must all be strings. Received: items of type \['NoneType'\]"),
        (SimpleNamespace(texts=["a", "b"], labels=["neg", "pos"]), TypeError,
         r"`data.labels` must be integer class indices .* Received: labels of dtype <U3, first 'neg'"),
        (SimpleNamespace(texts=["a", "b"], labels=[0.0, 1.0]), TypeError, r"Received: labels of dtype float64"),
        (SimpleNamespace(texts=["a", "b"], labels=[0]), ValueError,
         r"one label per text \(2\). Received: labels of shape \(1,\)"),
        (SimpleNamespace(texts=["a", "b"], labels=[0, -1]), ValueError, r"Received: labels from -1 to 0"),
        (SimpleNamespace(texts=["a"], labels=[2**40]), ValueError, r"fit in int32"),
    ],
    ids=["no_labels", "none_text", "string_labels", "float_labels", "label_count", "negative", "too_large"],
)
def test_bad_data_is_refused_naming_what_is_wrong(data, error, match):
    with pytest.raises(error, match=match):
        make_text_dataset(data, tokenizer=_tokenizer(), sequence_length=8, batch_size=2)


def test_quiet_sentencepiece_drops_only_its_info_line(capfd):
    import os

    from tf_prompt_tuning.preprocessing.text_pipeline import quiet_sentencepiece

    with quiet_sentencepiece():
        os.write(2, b"an error that matters\nnormalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. x\n")
    assert capfd.readouterr().err == "an error that matters\n"
