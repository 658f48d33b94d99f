"""grurec.ItemFeatures: parsing, validation, encoding (issue 18)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec.features import ItemFeatures, beauty_attributes, ml100k_features

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("GRUREC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))


def frame():
    return pd.DataFrame({
        "ItemId": ["b", "a", "c", "d"],
        "genres": [["x", "y"], [], None, ["y"]],
        "brand": ["p", "q", None, "p"],
        "price": [1.0, None, 3.0, 5.0],
        "emb": [[0.1, 0.2], [0.3, 0.4], None, [1.0, 2.0]],
    })


def test_kinds_are_inferred_and_vocabularies_sorted():
    f = ItemFeatures(frame())
    assert f.categorical == ["genres", "brand"]
    assert f.numeric == ["price"]
    assert f.dense == ["emb"]
    assert list(f.vocab["genres"]) == ["x", "y"]
    assert list(f.vocab["brand"]) == ["p", "q"]
    assert f.z_dim == 3
    assert grurec.ItemFeatures is ItemFeatures


def test_encode_aligns_to_item_order_and_counts_missing():
    f = ItemFeatures(frame())
    e = f.encode(np.array(["d", "zz", "b", "a"], dtype=object))
    assert e.n_missing == 1
    # genres: d -> [y], zz -> [], b -> [x, y], a -> []
    np.testing.assert_array_equal(e.cat_offsets[0], [0, 1, 1, 3, 3])
    np.testing.assert_array_equal(e.cat_ids[0], [2, 1, 2])
    np.testing.assert_array_equal(e.cat_offsets[1], [0, 1, 1, 2, 3])
    np.testing.assert_array_equal(e.cat_ids[1], [1, 1, 2])
    # price standardised over the known values 1, 3, 5 (mean 3, std sqrt(8/3));
    # the missing one (a) becomes 0
    sd = np.sqrt(8 / 3)
    np.testing.assert_allclose(e.z[:, 0], [2 / sd, 0, -2 / sd, 0], rtol=1e-6)
    np.testing.assert_allclose(e.z[:, 1:], [[1, 2], [0, 0], [0.1, 0.2], [0.3, 0.4]], rtol=1e-6)
    assert e.z.dtype == np.float32 and e.cat_ids[0].dtype == np.int32
    assert e.cat_offsets[0].dtype == np.int64


def test_explicit_kinds_override_inference():
    df = pd.DataFrame({"ItemId": [1, 2, 3], "year": [1990, 1995, 1990], "attrs": [[1, 2], [3], []]})
    f = ItemFeatures(df, categorical=["year"])
    assert f.categorical == ["year", "attrs"] and f.numeric == []
    assert list(f.vocab["year"]) == [1990, 1995]


def test_every_input_form_gives_the_same_encoding():
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    df = frame()
    ref = ItemFeatures(df).encode(df.ItemId.to_numpy())
    cols = {c: df[c].tolist() for c in df.columns}
    for src in (pl.from_pandas(df), pa.Table.from_pandas(df), cols):
        e = ItemFeatures(src).encode(df.ItemId.to_numpy())
        for a, b in zip(e.cat_ids + e.cat_offsets, ref.cat_ids + ref.cat_offsets):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(e.z, ref.z)


def test_dict_keyed_by_item():
    f = ItemFeatures({10: ["a", "b"], 11: ["b"]})
    assert f.categorical == ["attributes"]
    e = f.encode([11, 10, 12])
    np.testing.assert_array_equal(e.cat_offsets[0], [0, 1, 3, 3])
    g = ItemFeatures({"i1": {"genre": "x", "year": 1990}, "i2": {"genre": "y", "year": 2000}})
    assert g.categorical == ["genre"] and g.numeric == ["year"]


def test_integer_and_string_ids_match():
    f = ItemFeatures({"ItemId": ["1", "2"], "c": ["x", "y"]})
    e = f.encode(np.array([2, 1, 3]))
    np.testing.assert_array_equal(e.cat_ids[0], [2, 1])
    assert e.n_missing == 1


def test_new_items_use_the_training_vocabulary_and_stats():
    f = ItemFeatures(frame())
    new = pd.DataFrame({"ItemId": ["n"], "genres": [["y", "unseen"]], "brand": ["zz"],
                        "price": [3.0], "emb": [[5.0, 6.0]]})
    ids, e = f.encode_new(new)
    assert list(ids) == ["n"]
    np.testing.assert_array_equal(e.cat_ids[0], [2, 0])  # unknown -> reserved 0
    np.testing.assert_array_equal(e.cat_ids[1], [0])
    assert e.n_unknown == {"genres": 1, "brand": 1}
    np.testing.assert_allclose(e.z, [[0.0, 5.0, 6.0]])  # price 3 is the mean
    with pytest.raises(ValueError, match="'extra'"):
        f.encode_new(new.assign(extra=1))


def test_spec_round_trip():
    from grurec.features import FeatureSpec

    f = ItemFeatures(frame())
    s = FeatureSpec(f.spec())
    new = pd.DataFrame({"ItemId": ["n"], "genres": [["y"]], "brand": ["p"], "price": [1.0],
                        "emb": [[5.0, 6.0]]})
    a, b = f.encode_new(new)[1], s.encode_new(new)[1]
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.cat_ids[0], b.cat_ids[0])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("df, kw, match", [
    (pd.DataFrame({"item": [1], "c": ["x"]}), {}, r"item column 'ItemId' not found.*\['item', 'c'\]"),
    (pd.DataFrame({"ItemId": [1, 1], "c": ["x", "y"]}), {}, r"item 1 has more than one row \(rows 0 and 1\)"),
    (pd.DataFrame({"ItemId": [1, None], "c": ["x", "y"]}), {}, r"missing value .* row 1"),
    (pd.DataFrame({"ItemId": [1]}), {}, "no column besides the item column"),
    (pd.DataFrame({"ItemId": [1], "c": ["x"]}), {"numeric": ["nope"]}, "numeric column 'nope' not found"),
    (pd.DataFrame({"ItemId": [1], "c": ["x"]}), {"numeric": ["c"], "categorical": ["c"]},
     "'c' is named as both"),
    (pd.DataFrame({"ItemId": [1, 2], "p": ["1.5", "x"]}), {"numeric": ["p"]},
     r"numeric column 'p', item 1: value '1.5' \(str\) is not a number"),
    (pd.DataFrame({"ItemId": [1, 2], "p": [1.0, np.inf]}), {}, r"numeric column 'p', item 2: value inf"),
    (pd.DataFrame({"ItemId": [1, 2], "g": [["a"], ["b", None]]}), {},
     r"column 'g', item 2: a missing value"),
    (pd.DataFrame({"ItemId": [1, 2], "g": [["a"], [1.5]]}), {"categorical": ["g"]},
     r"column 'g', item 2: category 1.5 \(float\) must be a string"),
    (pd.DataFrame({"ItemId": [1, 2], "e": [[0.5, 1.0], [0.5]]}), {},
     r"dense column 'e', item 2: vector of length 1, expected 2"),
    (pd.DataFrame({"ItemId": [1, 2], "e": [[0.5, 1.0], [0.5, np.nan]]}), {},
     r"dense column 'e', item 2: the vector holds NaN"),
    (pd.DataFrame({"ItemId": [1, 2], "e": [[0.5, 1.0], "x"]}), {"dense": ["e"]},
     r"dense column 'e', item 2: value 'x' is not a vector"),
    (pd.DataFrame({"ItemId": [1], "c": [None]}), {}, "every value is missing"),
])
def test_bad_input_is_rejected_naming_column_item_and_value(df, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ItemFeatures(df, **kw)


def test_bad_table_type():
    with pytest.raises(TypeError, match="expected a pandas/polars DataFrame"):
        ItemFeatures([1, 2, 3])
    with pytest.raises(TypeError, match="item 2 maps to int"):
        ItemFeatures({1: ["a"], 2: 5})


# ------------------------------------------------------------------ loaders
needs_beauty = pytest.mark.skipif(not (SHARED / "beauty-s3rec").is_dir(),
                                  reason=f"no beauty-s3rec at {SHARED}")
needs_ml = pytest.mark.skipif(not (SHARED / "ml-100k").is_dir(),
                              reason=f"no ml-100k at {SHARED}")


@needs_beauty
def test_beauty_attributes():
    f = beauty_attributes(SHARED / "beauty-s3rec" / "Beauty_item2attributes.json")
    assert f.categorical == ["attributes"] and f.item_ids.dtype.kind == "i"
    assert f.n_items > 10_000 and len(f.vocab["attributes"]) > 100
    e = f.encode(f.item_ids)
    assert e.n_missing == 0 and (np.diff(e.cat_offsets[0]) > 0).mean() > 0.9


@needs_ml
def test_ml100k_features():
    f = ml100k_features(SHARED / "ml-100k" / "ml-100k.item")
    assert f.n_items == 1682 and f.numeric == ["year"]
    assert len(f.vocab["genres"]) >= 18
    e = f.encode([1, 2])  # Toy Story: Animation Children's Comedy
    toy = {f.vocab["genres"][i - 1] for i in e.cat_ids[0][: e.cat_offsets[0][1]]}
    assert toy == {"Animation", "Children's", "Comedy"}
