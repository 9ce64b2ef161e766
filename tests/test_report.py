"""``tinygen report``: rows from run directories (command, data, metrics, time, machine,
reference), notes kept across regeneration, clear errors."""
import json

import pytest

from tinygen.cli import main
from tinygen.train.report import NOTES_MARKER, find_runs, read_run, write_report


def _fake_run(root, name, model, model_config, results, machine=True):
    d = root / name
    d.mkdir(parents=True)
    config = {"model": model, "model_config": model_config,
              "train_config": {"epochs": 3, "batch_size": 100, "lr": 0.001, "seed": 0,
                               "val_fraction": 0.1, "device": "cpu"},
              "data": {"data_dir": "/data/mnist", "train": "embedded digits", "train_size": 4500,
                       "test_size": 10000}}
    if machine:
        config["machine"] = {"summary": "2-core Test CPU"}
    (d / "config.json").write_text(json.dumps(config))
    (d / "results.json").write_text(json.dumps(results))
    return d


def test_rows_from_real_and_fake_runs(tmp_path):
    from tinygen.models import MODELS
    defaults = {f: getattr(MODELS["vae"].Config(), f) for f in ("latent_dim", "hidden")}
    _fake_run(tmp_path, "vae", "vae", {**defaults, "latent_dim": 8},
              {"train_seconds": 90.0, "test_nll_nats": 99.28, "test_elbo_nats": -105.8})
    _fake_run(tmp_path, "clf", "classifier", {"channels": 32},
              {"train_seconds": 30.0, "val_error": 0.05}, machine=False)
    runs = find_runs([tmp_path])
    assert [r.split("/")[-1] for r in runs] == ["clf", "vae"]
    row = read_run(runs[1])
    assert row["command"] == ("tinygen train vae --latent-dim 8 --epochs 3 --data /data/mnist")
    assert row["metrics"] == "NLL (nats) 99.28, ELBO (nats) -105.80" and row["split"] == "test"
    assert row["time"] == "1.5 min" and row["machine"] == "2-core Test CPU"
    # PyTorch's number is for the default recipe: not beside a run of another one
    assert "99.30" not in row["reference"] and "IWAE paper" in row["reference"]
    clf = read_run(runs[0])
    assert clf["split"] == "val" and clf["metrics"] == "error 5.00%" and clf["machine"] == "-"


def test_same_recipe_reference_and_flags(tmp_path):
    from tinygen.models import MODELS
    from tinygen.train.loop import TrainConfig
    vae = MODELS["vae"]
    plain = {**{f: getattr(vae.Config(), f) for f in vae.Config.__dataclass_fields__},
             "iw_samples": 1000}                     # an evaluation option only
    d = _fake_run(tmp_path, "vae", "vae", plain, {"test_nll_nats": 99.9})
    config = json.loads((d / "config.json").read_text())
    config["train_config"] = {**TrainConfig().__dict__, **vae.train_defaults}
    (d / "config.json").write_text(json.dumps(config))
    row = read_run(d)
    assert row["command"] == "tinygen train vae --iw-samples 1000 --data /data/mnist"
    assert row["reference"] == ("PyTorch, same recipe: 99.30 nats (k = 1000); "
                                "IWAE paper, 1 layer: 86.76")
    # flags are written the way `tinygen train` takes them
    row = read_run(_fake_run(tmp_path, "dcgan", "dcgan", {"minibatch_std": True}, {}))
    assert "--minibatch-std " in row["command"] and "True" not in row["command"]
    row = read_run(_fake_run(tmp_path, "ddpm", "ddpm", {"attention": False}, {}))
    assert "--no-attention " in row["command"] and "False" not in row["command"]


def test_regenerating_keeps_the_notes(tmp_path, capsys):
    _fake_run(tmp_path / "runs", "a", "conv-ae", {}, {"train_seconds": 6.0, "test_mse": 0.0208})
    out = tmp_path / "results.md"
    out.write_text("# old table\n" + NOTES_MARKER + "\n## Reading notes\nkeep me\n")
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "old table" not in text and "MSE 0.0208" in text and text.endswith("keep me\n")
    assert text.count(NOTES_MARKER) == 1
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs" / "a")]) == 0
    assert "| conv-ae |" in capsys.readouterr().out


def test_an_unfinished_run_beside_finished_ones_is_left_out_with_a_note(tmp_path, capsys):
    _fake_run(tmp_path, "done", "conv-ae", {}, {"train_seconds": 6.0, "test_mse": 0.0208})
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "config.json").write_text("{}")
    assert main(["report", str(tmp_path / "done"), str(tmp_path / "training")]) == 0
    out = capsys.readouterr()
    assert "| conv-ae |" in out.out and "from 1 run;" in out.out
    assert out.err.strip() == (f"tinygen: report: left out {tmp_path / 'training'} (no "
                               f"finished run: no results.json)")


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished run" in err[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    (bad / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot read"):
        write_report([bad])


def test_a_real_run_has_its_machine_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGEN_NUM_THREADS", "1")
    assert main(["train", "toy-vae", "--epochs", "1", "--n-points", "40", "--iw-samples", "2",
                 "--out", str(tmp_path / "toy"), "--no-progress"]) == 0
    config = json.loads((tmp_path / "toy" / "config.json").read_text())
    assert config["machine"]["cores"] >= 1 and "core" in config["machine"]["summary"]
    assert config["machine"]["threads"] == "1" and config["machine"]["summary"].endswith(
        ", 1 thread")
    assert config["machine"]["load_average_at_start"] >= 0
    row = read_run(tmp_path / "toy")
    assert row["model"] == "toy-vae" and "NLL (nats)" in row["metrics"]
    assert row["command"] == "tinygen train toy-vae --iw-samples 2 --n-points 40 --epochs 1"


def test_an_eval_json_beside_the_results_adds_and_overrides_metrics(tmp_path):
    d = _fake_run(tmp_path, "vae", "vae", {}, {"train_seconds": 60.0, "test_nll_nats": 99.5})
    (d / "eval.json").write_text(json.dumps({
        "checkpoint": str(d / "model.ckpt"), "model": "vae", "split": "test", "size": 10000,
        "test_nll_nats": 99.25, "test_class_entropy": 2.25, "test_fid_classifier": 41.0,
        "settings": {"iw_samples": 100}}))
    row = read_run(d)
    assert row["command"].endswith("; evaluated with --set iw-samples=100")
    assert row["metrics"] == ("NLL (nats) 99.25, class entropy 2.250, "
                              "Fréchet (classifier) 41.0")
    assert row["time"] == "1.0 min"                # training time still from results.json


def test_baselines_and_second_errors_are_shown(tmp_path):
    d = _fake_run(tmp_path, "ae", "conv-ae", {}, {"train_seconds": 6.0, "test_mse": 0.0208,
                                                  "pca_test_mse": 0.0377, "val_mse": 0.02})
    assert read_run(d)["metrics"] == "MSE 0.0208, PCA (same d): MSE 0.0377"
    d = _fake_run(tmp_path, "sdae", "sdae", {}, {"test_error": 0.0553,
                                                 "test_scratch_error": 0.0722})
    assert read_run(d)["metrics"] == "error 5.53%, same MLP from scratch: error 7.22%"
