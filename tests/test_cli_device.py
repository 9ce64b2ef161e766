"""``--device`` on every command that runs a model (train, eval, sample): honoured where CuPy and a
GPU (or, in the emulated test run, the stand-in) are present, one clear line where they are not."""
import numpy as np
import pytest

from tinygen import backend
from tinygen.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "toy"
    assert main(["train", "toy-vae", "--epochs", "1", "--n-points", "60", "--iw-samples", "4",
                 "--out", str(out), "--no-progress"]) == 0
    return out / "model.ckpt"


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_device_flag_of_eval_and_sample(command, checkpoint, tmp_path, capsys):
    argv = [command, str(checkpoint), "--device", "cuda"]
    if command == "sample":
        argv += ["-n", "4", "--out", str(tmp_path / "s.png")]
    code = main(argv)
    err = capsys.readouterr().err
    if backend.cuda_available():          # a GPU, or the emulated device of `make test-gpu-emu`
        assert code == 0, err
    else:
        assert code != 0
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "--device cuda" in lines[0], err
    capsys.readouterr()
    assert main([command, str(checkpoint), "--device", "cpu"] +
                (["-n", "4", "--out", str(tmp_path / "c.png")] if command == "sample" else [])) == 0


def test_train_refuses_cuda_without_a_device(tmp_path, capsys):
    if backend.cuda_available():
        pytest.skip("a CUDA device (or the emulated one) is present: train --device cuda runs; "
                    "tests/test_cuda_* cover it")
    code = main(["train", "toy-vae", "--epochs", "1", "--device", "cuda",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--device cuda" in err[0]
    assert not (tmp_path / "x").exists()
    np.testing.assert_equal(backend.cuda_available(), False)
