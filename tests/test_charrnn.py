"""char-rnn (issue 7): the character LSTM language model.

* encoding round trip, unknown characters;
* data: a text file given with --data (consecutive train / val / test parts, windows of
  seq_len + 1), the embedded default (Python's pydoc topics), errors;
* the likelihood: bits per character equal the cross-entropy computed by hand; continuing from
  a returned state gives the same logits as reading the whole sequence (what sampling relies on);
* a short training on a repetitive text reaches a low bits/char and generates it back at low
  temperature; samples written as .txt (also for a .png path); a whole run through train_model.
"""
import json

import numpy as np
import pytest

import tinygen
from tinygen.models import MODELS
from tinygen.models.charrnn import ALPHABET, CharRNN, CharRNNConfig, decode, default_text, encode
from tinygen.train.loop import TrainConfig
from tinygen.train.run import sample_checkpoint, train_model

TINY = dict(seq_len=12, embed=8, hidden=24, layers=1, sample_length=30)


def test_encode_decode_round_trip():
    text = "Hello,\tworld!\n~ {x} 123"
    assert decode(encode(text)) == text
    assert encode(text).dtype == np.int64 and encode(text).max() < len(ALPHABET)
    assert decode(encode("héllo ∑")) == "h?llo ?"
    assert len(ALPHABET) == 97 and len(set(ALPHABET)) == 97


def test_load_data_from_file_and_default(tmp_path):
    path = tmp_path / "t.txt"
    text = "".join(chr(97 + (i * 7) % 26) for i in range(1300))
    path.write_text(text)
    m = CharRNN(CharRNNConfig(**TINY))
    data, desc = m.load_data(str(path), 0.1, 0)
    ids = encode(text)
    assert data.train.images.shape == (1040 // 13, 13) and data.train.images.dtype == np.int64
    np.testing.assert_array_equal(data.train.images.reshape(-1), ids[:1040])
    np.testing.assert_array_equal(data.val.images.reshape(-1), ids[1040:1170])
    np.testing.assert_array_equal(data.test.images.reshape(-1), ids[1170:1300])
    assert len(data.train.labels) == len(data.train.images)
    assert desc["characters"] == 1300 and "t.txt" in desc["train"]
    default, source = default_text()
    assert len(default) > 100_000 and "pydoc_data" in source
    d2, desc2 = m.load_data(None, 0.05, 0)
    assert desc2["characters"] == len(default) and len(d2.test) > 100
    with pytest.raises(ValueError, match="text file"):
        m.load_data(str(tmp_path), 0.1, 0)
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(ValueError, match="too short"):
        m.load_data(str(tmp_path / "short.txt"), 0.1, 0)


def test_bits_per_char_and_state_continuation():
    tinygen.manual_seed(0)
    m = CharRNN(CharRNNConfig(**{**TINY, "layers": 2}))
    w = np.random.default_rng(0).integers(0, len(ALPHABET), (5, 13))
    ev = m.evaluate(type("D", (), {"images": w})())
    with tinygen.no_grad():
        logits, _ = m(tinygen.tensor(w[:, :-1]))
    lg = logits.numpy().astype(np.float64)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, w[:, 1:, None], axis=-1).mean()
    assert abs(ev["nats_per_char"] - want) < 1e-5
    assert abs(ev["bits_per_char"] - want / np.log(2)) < 1e-5
    with tinygen.no_grad():
        first, state = m(tinygen.tensor(w[:, :7]))
        rest, _ = m(tinygen.tensor(w[:, 7:-1]), state)
    np.testing.assert_allclose(np.concatenate([first.numpy(), rest.numpy()], axis=1),
                               logits.numpy(), atol=1e-5)


def test_short_training_learns_a_repetitive_text(tmp_path):
    text = "the cat sat on the mat. " * 60
    tinygen.manual_seed(0)
    m = CharRNN(CharRNNConfig(**{**TINY, "hidden": 32}))
    path = tmp_path / "cat.txt"
    path.write_text(text)
    data, _ = m.load_data(str(path), 0.1, 0)
    before = m.evaluate(data.val)["bits_per_char"]
    opt = tinygen.optim.Adam(m.parameters(), lr=1e-2)
    windows = tinygen.tensor(data.train.images)
    for _ in range(80):
        loss = m.nll_per_char(windows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m.evaluate(data.val)["bits_per_char"]
    assert before > 5.0 and after < 0.5, (before, after)
    out = m.generate("the cat ", 40, np.random.default_rng(0), temperature=0.1)[0]
    assert out.startswith("the cat "), out
    words = out.split()[:-1]                                # the last word may be cut off
    assert len(words) >= 6 and set(words) <= {"the", "cat", "sat", "on", "mat."}, out
    with pytest.raises(ValueError, match="temperature"):
        m.generate("a", 3, np.random.default_rng(0), temperature=0.0)


def test_train_model_run_and_samples(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abc def ghi. " * 120)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, out=str(tmp_path / "run"),
                      progress=False)
    res = train_model("char-rnn", cfg, options=TINY, data_dir=str(path))
    assert set(res) >= {"val_bits_per_char", "test_bits_per_char"}
    assert 0 < res["test_bits_per_char"] < np.log2(len(ALPHABET))
    assert (tmp_path / "run" / "samples.txt").read_text().count("--- sample") == 4
    written = sample_checkpoint(str(tmp_path / "run" / "model.ckpt"), n=3,
                                out=str(tmp_path / "s.png"))
    assert written.endswith("s.txt")
    body = (tmp_path / "s.txt").read_text()
    assert body.count("--- sample") == 3 and body.count("The ") >= 3
    assert json.loads((tmp_path / "run" / "results.json").read_text())["model"] == "char-rnn"
    assert MODELS["char-rnn"] is CharRNN
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        CharRNN(CharRNNConfig(hidden=0))


def test_clip_grad_norm_option_reaches_the_trainer():
    from tinygen.models import MODELS
    cls = MODELS["char-rnn"]
    model = cls(cls.Config(hidden=8, embed=4, layers=1, clip_grad_norm=5.0))
    data = model.load_data(None, 0.1, 0)[0]
    assert model.phases(data)[0].clip_grad_norm == 5.0
    assert cls(cls.Config(hidden=8, embed=4, layers=1)).phases(data)[0].clip_grad_norm is None
    with pytest.raises(ValueError, match="clip_grad_norm"):
        cls(cls.Config(clip_grad_norm=-1.0))
