"""Writes examples/own_data.ipynb (outputs empty; .ci/run executes it).

Edit the cells here and run ``python examples/make_notebook.py``: the
notebook is generated so that its source stays reviewable as Python."""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# grurec on your own data

From event files to a trained, validated and saved model in a few steps. The data
here is synthetic (so the notebook runs anywhere in seconds), written as a
`;`-separated file, as many exports are; point the paths at your own files."""),
    ("code", """import tempfile
from pathlib import Path

import pandas as pd

import grurec
from grurec.synthetic import generate_sessions

work = Path(tempfile.mkdtemp())
train_df = generate_sessions(n_events=40_000, n_items=800, mean_length=6, signal=0.6, seed=1)
test_df = generate_sessions(n_events=4_000, n_items=800, mean_length=6, signal=0.6, seed=2)
test_df["SessionId"] += 10**6  # session ids unique across the files
test_df["Time"] += train_df["Time"].max() + 1  # test after train
train_df.to_csv(work / "train.csv", sep=";", index=False)
test_df.to_csv(work / "test.csv", sep=";", index=False)
train_df.head()"""),
    ("md", """## Read the files

`to_sessions` reads CSV/TSV/parquet (or a DataFrame) and checks every row; errors name
the column, the row and the value. Without `sep=";"` the error says which separator the
header seems to use."""),
    ("code", """try:
    grurec.to_sessions(work / "train.csv")
except ValueError as e:
    print(e)
train = grurec.to_sessions(work / "train.csv", sep=";")
test = grurec.to_sessions(work / "test.csv", sep=";")
train"""),
    ("md", """## Compare GRU4Rec with the baselines

The same table as `grurec compare TRAIN TEST --sep ';'` prints. A baseline can win on
some data: always check before deploying the GRU."""),
    ("code", """models = {
    "GRU4Rec": grurec.GRU4Rec(n_epochs=3, num_threads=2, random_state=0, show_progress=False),
    "POP": grurec.baselines.Popularity(),
    "S-POP": grurec.baselines.SessionPopularity(),
    "Item-KNN": grurec.baselines.ItemKNN(),
    "V-SKNN": grurec.baselines.VSKNN(),
}
rows = {}
for name, m in models.items():
    r = grurec.evaluate(m.fit(train), test, cutoffs=(5, 20), show_progress=False)
    rows[name] = {k: r[k] for k in ("recall@20", "mrr@20", "recall@5")}
pd.DataFrame(rows).T.round(4)"""),
    ("md", """## Validation and early stopping

`valid=0.1` holds out the sessions of the last 10% of the training events (by time),
evaluates after every epoch with the same code as `grurec.evaluate`, keeps the best
epoch's weights and stops after `patience` epochs without improvement."""),
    ("code", """model = grurec.GRU4Rec(n_epochs=8, num_threads=2, random_state=0, show_progress=False)
model.fit(train, valid=0.1, patience=2, metric="mrr@20")
print("kept epoch", model.best_epoch)
pd.DataFrame(model.history)[["epoch", "loss", "mrr@20"]]"""),
    ("code", """grurec.evaluate(model, test, cutoffs=20)"""),
    ("md", """## Recommend, similar items, save"""),
    ("code", """# Ids read from a text file are strings, verbatim (coerce_ids=True would convert 12 -> '12').
session = [str(i) for i in test_df[test_df.SessionId == test_df.SessionId.iloc[0]].ItemId]
ids, scores = model.recommend([session], k=5, exclude_seen=True)
print("session", session, "-> next", ids[0])
print("similar to", session[-1], "->", model.similar_items(session[-1], k=5)[0])
model.save(work / "model.grurec")
again = grurec.load(work / "model.grurec")
assert (again.recommend([session], k=5, exclude_seen=True)[0] == ids).all()
again"""),
    ("md", """## scikit-learn manners

Every model has `get_params` / `set_params`, so `sklearn.base.clone` and parameter
grids work (scikit-learn itself is optional)."""),
    ("code", """try:
    from sklearn.base import clone
except ImportError:
    clone = None
fresh = clone(model) if clone else type(model)(**model.get_params())
fresh.set_params(n_epochs=2, layers=[64])"""),
]


def main():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in CELLS]
    out = Path(__file__).with_name("own_data.ipynb")
    nbformat.write(nb, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
