"""The command line: list, train (help, errors, a short real run), sample, eval, resume."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from _synthetic import write_synthetic_mnist
from tinygen.cli import main
from tinygen.models import MODELS


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """A small MNIST-format directory (train and t10k IDX files, gzipped) of synthetic digits."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist"))


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_names_every_model(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for name, cls in MODELS.items():
        assert name in out and cls.description in out


def test_no_command_prints_help(capsys):
    code, out, _ = run([], capsys)
    assert code == 2 and "train" in out and "sample" in out and "eval" in out


def test_train_help_lists_the_model_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "conv-ae", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--latent-dim" in out and "--channels" in out and "--epochs" in out
    assert "(default: 25)" in out  # the model's own default number of epochs
    # every model option is explained by the comment beside its Config field
    from tinygen.cli import _option_comments
    for name, cls in MODELS.items():
        comments = _option_comments(cls.Config)
        missing = [f for f in cls.Config.__dataclass_fields__ if f not in comments]
        assert not missing, f"{name}: options without a comment in its Config: {missing}"
    with pytest.raises(SystemExit):
        main(["train", "dcgan", "--help"])
    assert "scoring classifier" in " ".join(capsys.readouterr().out.split())
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0 and "conv-ae" in out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_help_of_every_model(name, capsys):
    """Every model's help prints (a "%" in an option's comment once made argparse fail)."""
    with pytest.raises(SystemExit) as e:
        main(["train", name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"tinygen train {name}" in out and "--epochs" in out
    if name == "ddpm":
        text = " ".join(out.split())
        assert "cosine decay to 10%" in text
        assert "after a short training eta 0 left" in text   # a comment continued below its field


def test_unknown_model_suggests_close_names(capsys):
    code, _, err = run(["train", "conv-a"], capsys)
    assert code == 2 and "unknown model 'conv-a'" in err and "conv-ae" in err
    code, _, err = run(["train"], capsys)
    assert code == 2 and "name a model" in err


def test_unknown_option_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "mlp-ae", "--noise", "pink"])   # a dae option, not an mlp-ae one
    assert e.value.code == 2
    assert "unrecognized arguments: --noise" in capsys.readouterr().err


def test_bad_values_are_refused(capsys, tmp_path):
    code, _, err = run(["train", "mlp-ae", "--epochs", "0", "--batch-size", "0",
                        "--out", str(tmp_path)], capsys)
    assert code == 2 and "batch_size must be >= 1" in err
    code, _, err = run(["train", "dae", "--noise", "pink", "--out", str(tmp_path)], capsys)
    assert code == 2 and "noise must be one of" in err


def test_missing_checkpoint(capsys, tmp_path):
    code, _, err = run(["eval", str(tmp_path / "nope.ckpt")], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run(["sample", str(tmp_path / "nope.ckpt")], capsys)
    assert code == 2 and "does not exist" in err


def test_train_eval_sample_resume_round_trip(capsys, tmp_path, mnist_dir):
    out = tmp_path / "run"
    code, stdout, err = run(["train", "mlp-ae", "--data", str(mnist_dir), "--epochs", "2",
                             "--batch-size", "40", "--lr", "3e-3", "--hidden", "64",
                             "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    for name in ("config.json", "metrics.jsonl", "last.ckpt", "best.ckpt", "model.ckpt",
                 "results.json", "loss.png", "reconstructions.png", "interpolations.png",
                 "samples.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert 0 < results["test_mse"] < 1 and 0 < results["pca_test_mse"] < 1  # both reported
    # the shipped classifier judges the autoencoder's samples (held-out split only)
    assert 0 <= results["test_class_entropy"] <= 2.303 and results["test_fid_classifier"] > 0
    assert results["test_scored_samples"] == 10000 and "val_class_entropy" not in results
    assert results["val_mse"] > 0 and results["selected"] == "best validation epoch"
    assert "epoch 2: loss" in stdout and "test_mse" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["train_size"] == 216 and cfg["data"]["test_size"] == 60
    assert cfg["model_config"]["hidden"] == 64
    # the code that trained it: the version, and the commit when tinygen is a git checkout
    import tinygen
    assert cfg["code"]["tinygen"] == tinygen.__version__
    root = os.path.dirname(os.path.dirname(os.path.abspath(tinygen.__file__)))
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert cfg["code"]["git_commit"] == head.stdout.strip()
        assert isinstance(cfg["code"]["git_dirty"], bool)
    else:
        assert "git_commit" not in cfg["code"]
    with Image.open(out / "samples.png") as im:
        assert im.size[0] > 28

    code, stdout, _ = run(["eval", str(out / "model.ckpt"), "--data", str(mnist_dir), "--json"],
                          capsys)
    assert code == 0
    ev = json.loads(stdout)
    assert ev["split"] == "test" and ev["size"] == 60
    assert ev["test_mse"] == pytest.approx(results["test_mse"], rel=1e-6)
    assert ev["pca_test_mse"] == pytest.approx(results["pca_test_mse"], rel=1e-6)
    code, stdout, _ = run(["eval", str(out / "model.ckpt")], capsys)   # the training data dir
    assert code == 0 and "test_mse" in stdout
    # eval --out: the JSON file tinygen report reads; an earlier result is replaced, any other
    # file refused in one line
    code, _, err = run(["eval", str(out / "model.ckpt"), "--out", str(out / "eval.json")],
                       capsys)
    assert code == 0, err
    assert json.loads((out / "eval.json").read_text())["test_mse"] == ev["test_mse"]
    code, _, err = run(["eval", str(out / "model.ckpt"), "--out", str(out / "eval.json")],
                       capsys)
    assert code == 0, err
    code, _, err = run(["eval", str(out / "model.ckpt"), "--out", str(out / "results.json")],
                       capsys)
    assert code == 2 and "results.json" in err and "not an earlier tinygen eval" in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((out / "results.json").read_text()) == results        # untouched

    # export: a weights-only copy that rebuilds the same model; never replaces a file
    small = tmp_path / "weights.ckpt"
    code, _, err = run(["export", str(out / "model.ckpt"), str(small)], capsys)
    assert code == 0, err
    assert small.stat().st_size < (out / "model.ckpt").stat().st_size / 2
    code, stdout, _ = run(["eval", str(small), "--data", str(mnist_dir), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["test_mse"] == ev["test_mse"]
    before = small.read_bytes()
    code, _, err = run(["export", str(out / "model.ckpt"), str(small)], capsys)
    assert code == 2 and "never replaces" in err and small.read_bytes() == before
    code, _, err = run(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "x.ckpt")],
                       capsys)
    assert code == 2 and "missing.ckpt" in err and not (tmp_path / "x.ckpt").exists()

    png = tmp_path / "s.png"
    code, stdout, _ = run(["sample", str(out / "model.ckpt"), "-n", "9", "--out", str(png)],
                          capsys)
    assert code == 0 and png.is_file()
    with Image.open(png) as im:
        assert min(im.size) >= 3 * 28 * 2     # 3x3 grid at scale 2

    # resume the finished 2-epoch run for a third epoch
    code, stdout, err = run(["train", "mlp-ae", "--data", str(mnist_dir), "--epochs", "3",
                             "--out", str(out), "--resume", str(out / "last.ckpt"),
                             "--no-progress"], capsys)
    assert code == 0, err
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert epochs == [1, 2, 3]


def test_sdae_cannot_sample(capsys, tmp_path, mnist_dir):
    out = tmp_path / "sdae"
    code, _, err = run(["train", "sdae", "--data", str(mnist_dir), "--epochs", "1",
                        "--pretrain-epochs", "1", "--layers", "1", "--hidden", "32",
                        "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test_error"] <= 1 and 0 <= res["test_scratch_error"] <= 1
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = {r["phase"]: set(r) - {"kind", "phase", "epoch", "step"}
            for r in vals if r["kind"] == "val"}
    assert vals == {"scratch": {"scratch_error"}, "finetune": {"error"}}
    code, _, err = run(["sample", str(out / "model.ckpt")], capsys)
    assert code == 2 and "does not generate samples" in err


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "tinygen", "list"], capture_output=True,
                         text=True, env={**os.environ})
    assert res.returncode == 0 and "conv-ae" in res.stdout


def test_eval_classifier_override(capsys, tmp_path, mnist_dir):
    """train/eval --classifier: none drops the sample scores of a model without a classifier
    option; a checkpoint that is not a classifier is one line naming it."""
    out = tmp_path / "run"
    code, _, err = run(["train", "linear-ae", "--data", str(mnist_dir), "--epochs", "1",
                        "--out", str(out), "--no-progress", "--classifier", "none"], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert "test_mse" in results and "test_class_entropy" not in results
    code, _, err = run(["train", "linear-ae", "--data", str(mnist_dir), "--epochs", "1",
                        "--out", str(tmp_path / "other"), "--classifier",
                        str(tmp_path / "nothing.ckpt")], capsys)
    assert code == 2 and "--classifier" in err and "nothing.ckpt" in err
    assert not (tmp_path / "other").exists()                       # checked before any file
    code, stdout, _ = run(["eval", str(out / "model.ckpt"), "--json"], capsys)
    assert code == 0 and "test_class_entropy" in json.loads(stdout)
    code, stdout, _ = run(["eval", str(out / "model.ckpt"), "--json", "--classifier", "none"],
                          capsys)
    ev = json.loads(stdout)
    assert code == 0 and "test_mse" in ev and "test_class_entropy" not in ev
    code, stdout, _ = run(["eval", str(out / "model.ckpt"), "--json", "--samples", "50"],
                          capsys)
    assert code == 0 and json.loads(stdout)["test_scored_samples"] == 50
    code, stdout, _ = run(["eval", str(out / "model.ckpt"), "--json", "--scores-only",
                           "--samples", "30"], capsys)
    ev = json.loads(stdout)
    assert code == 0 and "test_mse" not in ev and ev["test_scored_samples"] == 30
    assert 0 <= ev["test_class_entropy"] <= 2.303
    code, _, err = run(["eval", str(out / "model.ckpt"), "--samples", "1"], capsys)
    assert code == 2 and "--samples must be an integer >= 2" in err
    code, _, err = run(["eval", str(out / "model.ckpt"), "--classifier",
                        str(out / "model.ckpt")], capsys)
    assert code == 2 and err.startswith("tinygen: error: --classifier:")
    assert "not of the 'classifier' model" in err and len(err.strip().splitlines()) == 1


def test_eval_and_sample_set_options_of_the_stored_model(capsys, tmp_path, mnist_dir):
    """--set KEY=VALUE changes an option before the model is rebuilt (typed by the Config
    field); unknown keys, bad values and shape-changing options are one line each."""
    out = tmp_path / "run"
    code, _, err = run(["train", "vae", "--data", str(mnist_dir), "--epochs", "1",
                        "--hidden", "32", "--iw-samples", "2", "--out", str(out),
                        "--no-progress", "--classifier", "none"], capsys)
    assert code == 0, err
    ckpt = str(out / "model.ckpt")
    code, stdout, err = run(["eval", ckpt, "--json", "--classifier", "none", "--set",
                             "iw-samples=3", "--set", "beta=2"], capsys)
    assert code == 0, err
    ev = json.loads(stdout)
    base = json.loads((out / "results.json").read_text())
    assert ev["test_nll_nats"] != base["test_nll_nats"]           # k = 3 instead of 2
    assert ev["settings"] == {"iw_samples": 3, "beta": 2.0}
    for bad, msg in ((["--set", "iw_samples"], "expected KEY=VALUE"),
                     (["--set", "depthx=2"], "one of the options of model 'vae'"),
                     (["--set", "iw-samples=many"], "iw_samples takes an integer, got 'many'"),
                     (["--set", "hidden=64"], "weights do not fit")):
        code, _, err = run(["eval", ckpt] + bad, capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    png = tmp_path / "s.png"
    code, _, err = run(["sample", ckpt, "-n", "4", "--out", str(png), "--set", "latent-dim=20"],
                       capsys)
    assert code == 0 and png.is_file(), err                        # 20 is the run's own value
