"""Text end to end (data.text): a tokenizer fitted on the training split only, token-id models whose output does not
depend on padding, predict and eval on raw text, clear errors for bad text columns, resume.

Real text: a stratified sample of the SMS Spam Collection in examples/data/sms_spam (CC BY 4.0), small enough that a
run takes about a second.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.config import ModelConfig, TokenizerConfig
from gradwise.data.text import TextEncoder, join_texts
from gradwise.inference import evaluate_run, predict
from gradwise.models import build_model

SMS = Path(__file__).resolve().parents[1] / "examples" / "data" / "sms_spam" / "SMSSpamCollection.tsv"
READ = "data.options.read_kwargs={quoting: 3}"


def sms_sample(n: int = 600, seed: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(SMS, sep="\t", quoting=csv.QUOTE_NONE)
    picked = frame.groupby("Label", group_keys=False).sample(frac=n / len(frame), random_state=seed)
    return picked.sample(frac=1.0, random_state=seed)  # shuffled: ham and spam mixed


def write_sample(tmp_path: Path, frame: pd.DataFrame | None = None, name: str = "sms.csv") -> Path:
    path = tmp_path / name
    (sms_sample() if frame is None else frame).to_csv(path, index=False)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from gradwise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", f"data.dataset={data}", "data.target=Label", "data.text=[SMS]", "model.name=embedding_bag",
            "train.epochs=3", "train.batch_size=32", "optim.lr=0.01", "--quiet", "--out", str(out), *extra]


# ------------------------------------------------------------------------------------------ fitted on train only


def test_tokenizer_is_fitted_on_the_training_split_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = sms_sample()
    train, test = frame.iloc[:450].copy(), frame.iloc[450:].copy()
    test["SMS"] = test["SMS"] + " zyxwvut"  # a word only the test split has
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path, train), tmp_path / "run",
                                           f"data.test_file={write_sample(tmp_path, test, 'test.csv')}"))
    assert code == 0, err
    run = tmp_path / "run"
    vocab = json.loads((run / "tokenizer.json").read_text())["model"]["vocab"]
    assert "zyxwvut" not in vocab and "free" in vocab
    splits = json.loads((run / "data_report.json").read_text())["text"]["by_split"]
    assert splits["train"]["oov_rate"] == 0.0
    # every test message has the unknown word: at least one OOV token in each
    assert splits["test"]["rows_with_oov"] == 1.0 and splits["test"]["oov_rate"] > 0.05
    assert 0.0 < splits["val"]["oov_rate"] < splits["test"]["oov_rate"]


@pytest.mark.parametrize("kind", ["word", "bpe", "wordpiece", "char"])
def test_each_tokenizer_kind_and_its_saved_form(kind: str, tmp_path: Path) -> None:
    from gradwise.data.preprocess import Preprocessor

    texts = join_texts(sms_sample(400), ["SMS"])
    enc, report = TextEncoder.fit(texts, TokenizerConfig(kind=kind, vocab_size=500, length_percentile=90), ["SMS"])
    assert report["tokenizer"]["vocab_size"] == enc.vocab_size <= 500
    new = ["Congratulations U have WON a Nokia phone visit www.example.com/claim now 08001234567"]
    ids, stats = enc.encode(new)
    assert ids.shape == (1, enc.max_length) and ids.dtype == np.int64
    # the URL is one token, not its pieces
    assert "_url_" in enc.tokenizer.decode(ids[0].tolist(), skip_special_tokens=False) or kind == "char"
    if kind in ("bpe", "char"):  # subwords and characters spell words training never saw
        assert stats["oov_rate"] < 0.1
    # what a run directory keeps (preprocess.json + tokenizer.json) encodes exactly the same ids
    pre = Preprocessor("text", "classification")
    pre.text, pre.sample_shape = enc, (enc.max_length,)
    pre.save(tmp_path / "preprocess.json")
    loaded = Preprocessor.load(tmp_path)
    np.testing.assert_array_equal(loaded.text.encode(new + texts[:50])[0], enc.encode(new + texts[:50])[0])


# ------------------------------------------------------------------------------------------ padding never counts


@pytest.mark.parametrize("name", ["embedding_bag", "gru", "lstm", "transformer"])
def test_padding_does_not_change_predictions(name: str, tmp_path: Path) -> None:
    frame = sms_sample(300)
    enc, _ = TextEncoder.fit(join_texts(frame, ["SMS"]), TokenizerConfig(max_length=40), ["SMS"])
    ids, _ = enc.encode(join_texts(frame, ["SMS"]))
    y = (frame["Label"] == "spam").to_numpy().astype(np.int64)
    extra = {"options": {"bigrams": 500}} if name == "embedding_bag" else {"dropout": 0.1}
    model = build_model(ModelConfig(name=name, hidden_size=16, **extra), (40,), 2, "classification",
                        vocab_size=enc.vocab_size)
    # through fit: int64 ids stay ids (the model starts with an embedding)
    gradwise.fit(model, (ids, y), epochs=1, batch_size=64, out=tmp_path / "run", doctor=False, progress="none")
    model.eval()
    short, _ = enc.encode(["WINNER!! call 09061701461 to claim your prize"])
    length = int((short != 0).sum())
    assert 3 < length < 20
    with torch.no_grad():
        at_40 = model(torch.from_numpy(short))  # padded to 40
        exact = model(torch.from_numpy(short[:, :length]))  # no padding at all
        at_25 = model(torch.from_numpy(short[:, :25]))
        # in a batch beside a long message (which is why it is padded)
        batch = model(torch.from_numpy(np.concatenate([ids[np.argmax((ids != 0).sum(1))][None], short])))[1:]
    for other in (exact, at_25, batch):
        torch.testing.assert_close(other, at_40, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(at_40, model(torch.from_numpy(ids[:1])), atol=1e-4)  # the output does depend on text


# ------------------------------------------------------------------------------------------ predict and eval


def test_predict_new_raw_text_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path), run, "train.epochs=6"))
    assert code == 0, err
    messages = pd.DataFrame({"id": [1, 2, 3],
                             "SMS": ["FREE entry! Txt WIN to 80086 to claim your £1000 cash prize now",
                                     "ok see you at home later, I'll bring the food", ""]})
    messages.to_csv(tmp_path / "messages.csv", index=False)
    code, _, err = cli(capsys, "predict", str(run), str(tmp_path / "messages.csv"), "-o", str(tmp_path / "p.csv"))
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["id", "prediction", "prob_ham", "prob_spam"]
    assert pred["prediction"].tolist()[:2] == ["spam", "ham"]
    np.testing.assert_allclose(pred["prob_ham"] + pred["prob_spam"], 1.0, atol=1e-6)
    # predict needs only the run directory: the same rows from a DataFrame give the same probabilities
    again = predict(run, messages)
    np.testing.assert_allclose(again["prob_spam"], pred["prob_spam"], atol=1e-6)
    # eval re-reads the data and applies the run's own tokenizer: the test metrics training reported
    summary = json.loads((run / "summary.json").read_text())["test"]
    metrics = evaluate_run(run)
    assert metrics["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    # a file without the text column: one line naming it
    pd.DataFrame({"text": ["hi"]}).to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = cli(capsys, "predict", str(run), str(tmp_path / "bad.csv"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'SMS'" in err, err


# ------------------------------------------------------------------------------------------ clear errors


@pytest.mark.parametrize(("change", "says"), [
    ("missing", "data.text names column 'Message', which is not in"),
    ("numeric", "holds numbers"),
    ("empty", "is empty (no cell holds text)"),
    ("extra", "besides the text column(s) 'SMS'"),
    ("model", "model 'mlp' cannot read token ids"),
])
def test_bad_text_column_is_one_clear_line(change: str, says: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    frame = sms_sample(100)
    extra: list[str] = []
    if change == "missing":
        extra = ["data.text=[Message]"]
    elif change == "numeric":
        frame["SMS"] = np.arange(len(frame))
    elif change == "empty":
        frame["SMS"] = np.nan
    elif change == "extra":
        frame["length"] = frame["SMS"].str.len()
    else:
        extra = ["model.name=mlp"]
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path, frame), tmp_path / "run", *extra))
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("bad", "says"), [
    (1e300, "holds huge values (1, e.g. 1e+300 in row 7 of the training data)"),
    ("long", "has 1 non-numeric or infinite value(s) (e.g. ['long'])"),
])
def test_text_regression_target_is_checked_like_a_table_target(bad: object, says: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Text runs clean and code their targets with the table path's steps (data/prepare.py), so a sentinel or a
    word in a regression target is named with its row or value, as for any table."""
    frame = sms_sample(100).drop(columns="Label").reset_index(drop=True)
    frame["Length"] = frame["SMS"].str.len().astype(object)
    frame.loc[6, "Length"] = bad
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path, frame), tmp_path / "run", "data.target=Length",
                                           "data.options.task=regression"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_missing_tokenizers_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now raises ImportError
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path), tmp_path / "run"))
    assert code == 2 and 'pip install "gradwise[text]"' in err, err


# ------------------------------------------------------------------------------------------ resume


def test_resume_a_text_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    data = write_sample(tmp_path)
    code, _, err = cli(capsys, *train_args(data, run, "train.epochs=2", "train.early_stopping.enabled=false"))
    assert code == 0, err
    first = (run / "tokenizer.json").read_text()
    code, _, err = cli(capsys, "train", "--resume", str(run), "train.epochs=4", "--quiet")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 4 and summary["resumed"]
    assert (run / "tokenizer.json").read_text() == first  # the same training rows give the same tokenizer
    # a tokenizer setting cannot change under a resumed run: its ids would mean other tokens
    code, _, err = cli(capsys, "train", "--resume", str(run), "train.epochs=5", "data.tokenizer.vocab_size=50",
                       "--quiet")
    assert code == 2 and "data.tokenizer.vocab_size" in err, err


# ------------------------------------------------------------------------------------------ tune


def test_tune_space_accepts_tokenizer_keys_and_checks_their_values() -> None:
    from gradwise.config import validate_config
    from gradwise.errors import ConfigError
    from gradwise.tune.space import build_space

    def space(entries: dict) -> list:
        return build_space(validate_config({"tune": {"space": entries}}, "config"))

    params = space({"data.tokenizer.kind": ["word", "bpe", "char"],
                    "data.tokenizer.vocab_size": {"low": 500, "high": 20000, "log": True},
                    "data.tokenizer.length_percentile": {"low": 90.0, "high": 100.0},
                    "model.name": ["embedding_bag", "gru", "transformer"]})
    kinds = {p.key: p.kind for p in params}
    assert kinds == {"data.tokenizer.kind": "categorical", "data.tokenizer.vocab_size": "int",
                     "data.tokenizer.length_percentile": "float", "model.name": "categorical"}
    with pytest.raises(ConfigError, match="data.tokenizer.kind"):  # a value the config refuses, said before trials
        space({"data.tokenizer.kind": ["word", "sentencepiece"]})


@pytest.mark.slow  # a real 3-trial study (~10 s on an idle machine)
def test_tune_searches_tokenizer_and_model_keys(tmp_path: Path) -> None:
    import io

    import yaml
    from optuna.trial import TrialState
    from rich.console import Console

    from gradwise.tune.command import tune

    config = {
        "name": "sms-tune", "seed": 0,
        "data": {"dataset": str(write_sample(tmp_path)), "target": "Label", "text": ["SMS"]},
        "model": {"name": "embedding_bag", "hidden_size": 16},
        "train": {"epochs": 2, "batch_size": 32},
        "tune": {"metric": "val_f1", "trials": 3, "sampler": "random", "pruner": "none",
                 "space": {"data.tokenizer.kind": ["word", "bpe", "wordpiece"],
                           "data.tokenizer.vocab_size": {"low": 200, "high": 2000, "log": True},
                           "model.name": ["embedding_bag", "gru"]}},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    buf = io.StringIO()
    code = tune(path, None, None, None, None, False, tmp_path / "study", [],
                console=Console(file=buf, width=160, highlight=False))
    assert code == 0, buf.getvalue()
    frame = pd.read_csv(tmp_path / "study" / "trials.csv")
    assert len(frame) == 3 and (frame["state"] == TrialState.COMPLETE.name).all(), frame
    assert {"params_data.tokenizer.kind", "params_data.tokenizer.vocab_size", "params_model.name"} <= set(frame)
    # each trial's tokenizer is the one its parameters asked for
    for _, row in frame.iterrows():
        report = json.loads((Path(row["user_attrs_run_dir"]) / "data_report.json").read_text())["text"]
        assert report["tokenizer"]["kind"] == row["params_data.tokenizer.kind"]
        assert report["tokenizer"]["vocab_size"] <= row["params_data.tokenizer.vocab_size"]


# ------------------------------------------------------------------------------------------ doctor


def test_doctor_flags_a_tokenizer_fitted_on_the_wrong_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    frame = sms_sample(800)
    train, test = write_sample(tmp_path, frame.iloc[:400], "train.csv"), write_sample(tmp_path, frame.iloc[400:],
                                                                                       "test.csv")
    # a tokenizer fitted on the test rows (what a tokenizer.json from the wrong split is)
    code, _, err = cli(capsys, *train_args(test, tmp_path / "on_test", "train.epochs=1"))
    assert code == 0, err
    findings = [json.loads(line) for line in (tmp_path / "on_test" / "findings.jsonl").read_text().splitlines()]
    assert not any("out of vocabulary" in f["message"] for f in findings)  # fitted on its own training split: quiet
    assert not any(f["code"] == "unnormalized_inputs" for f in findings)  # token ids are not measurements
    code, _, err = cli(capsys, *train_args(train, tmp_path / "run", "train.epochs=1", f"data.test_file={test}",
                                           f"data.tokenizer.file={tmp_path / 'on_test' / 'tokenizer.json'}"))
    assert code == 0, err
    findings = [json.loads(line) for line in (tmp_path / "run" / "findings.jsonl").read_text().splitlines()]
    wrong = [f for f in findings if "knows the test texts better than the training texts" in f["message"]]
    assert wrong and wrong[0]["code"] == "train_eval_mismatch", findings
    assert wrong[0]["evidence"]["train_oov_rate"] > wrong[0]["evidence"]["test_oov_rate"]


# ------------------------------------------------------------------------------------------ factory, detection


def test_factory_model_gets_token_ids_and_the_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "my_text_nets.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "from gradwise.data.text import padding_mask\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, vocab_size, n_outputs):\n"
        "        super().__init__()\n"
        "        self.embed = nn.Embedding(vocab_size, 16)\n"
        "        self.head = nn.Linear(16, n_outputs)\n\n"
        "    def forward(self, ids):\n"
        "        assert ids.dtype == torch.int64 and ids.ndim == 2\n"
        "        mask = padding_mask(ids).unsqueeze(-1).float()\n"
        "        return self.head((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1))\n\n"
        "def make(vocab_size, n_outputs):\n"
        "    return Net(vocab_size, n_outputs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path), run, "model.factory=my_text_nets:make"))
    assert code == 0, err
    vocab = json.loads((run / "data_report.json").read_text())["text"]["tokenizer"]["vocab_size"]
    weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert weights["embed.weight"].shape == (vocab, 16)


def test_free_text_column_without_data_text_is_pointed_out(tmp_path: Path) -> None:
    data = write_sample(tmp_path)
    # one-hot of hundreds of messages trains, but data_report.json says what the column is and what to set
    gradwise.train(None, [f"data.dataset={data}", "data.target=Label", "model.name=logreg", "train.epochs=1",
                          "train.progress=none", f"out={tmp_path / 'run'}"])
    notes = json.loads((tmp_path / "run" / "data_report.json").read_text())["warnings"]
    assert any("looks like free text" in n and "data.text" in n for n in notes), notes


def test_pretrained_word_vectors_start_the_embedding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = tmp_path / "vectors.txt"
    # fastText's header line, then GloVe-style lines; "FREE" is found for the lowercase token "free"
    vectors.write_text("3 16\nFREE " + " ".join(["0.5"] * 16) + "\ncall " + " ".join(["-0.25"] * 16)
                       + "\nzyxwvut " + " ".join(["1"] * 16) + "\n")
    run = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path), run, "model.hidden_size=16", "train.epochs=1",
                                           "optim.lr=1e-12", f"model.embeddings={vectors}"))
    assert code == 0, err
    report = json.loads((run / "data_report.json").read_text())["embeddings"]
    assert report["found"] == 2 and report["dim"] == 16
    vocab = json.loads((run / "tokenizer.json").read_text())["model"]["vocab"]
    weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]["embed.bag.weight"]
    torch.testing.assert_close(weights[vocab["free"]], torch.full((16,), 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights[vocab["call"]], torch.full((16,), -0.25), atol=1e-6, rtol=0)
    # vectors of another width: one line saying which width to set
    code, _, err = cli(capsys, *train_args(write_sample(tmp_path), tmp_path / "run2", f"model.embeddings={vectors}"))
    assert code == 2 and "16-number vectors" in err and "64 wide" in err, err
