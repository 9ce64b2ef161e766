"""Real NVP layers (tinygen.nn.flows) and models (tinygen.models.flows), in float64:

* every layer type and the whole flows invert exactly (reconstruction error <= 1e-10);
* their log-det equals log |det| of the full Jacobian computed by brute force (one backward pass
  per output coordinate), with hypothesis over dimensions, masks and image sizes;
* the lecture's Jacobian-structure example (lower triangular after reordering);
* the models: nvp-toy beats a Gaussian on two moons and its density integrates to 1, realnvp's
  bits/dim formula, training step, sampling, temperature and interpolation; the CLI path.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinygen
from tinygen import nn
from tinygen.data import load_embedded_mnist
from tinygen.models import MODELS
from tinygen.models.flows import (MultiScaleFlow, NVPNet, NVPToy, RealNVP,
                                  standard_normal_logpdf)
from tinygen.nn.flows import (AffineCoupling, CouplingResNet, DequantizeLogit, FactorOut, Squeeze,
                              channel_mask, checkerboard_mask, half_mask)

INVERSE_TOL = 1e-10


# -- helpers -------------------------------------------------------------------------------------
def randomize(module, seed=0, std=0.3):
    """Random weights everywhere (the last conv of a CouplingResNet starts at zero, which would
    make every coupling the identity), in float64."""
    module.double()
    rng = np.random.default_rng(seed)
    with tinygen.no_grad():
        for p in module.parameters():
            p.copy_(tinygen.tensor(rng.normal(0.0, std, p.shape)))
    return module


def jacobian(fn, x):
    """Brute-force Jacobian of fn at one sample x (1, ...): fn maps a (1, ...) Tensor to a
    Tensor with one row; returns (D_out, D_in), one reverse pass per output coordinate."""
    xt = tinygen.tensor(x, requires_grad=True)
    out = fn(xt).reshape(-1)
    rows = []
    for i in range(out.shape[0]):
        e = np.zeros(out.shape[0])
        e[i] = 1.0
        (g,) = tinygen.grad(out, [xt], grad_outputs=tinygen.tensor(e), retain_graph=True)
        rows.append(g.numpy().reshape(-1))
    return np.stack(rows)


def log_abs_det(jac):
    sign, value = np.linalg.slogdet(jac)
    assert sign != 0, "the Jacobian is singular"
    return value


def check_layer(layer, x):
    """Inverse and brute-force log-det of a layer with forward(x) -> (y, logdet)."""
    y, logdet = layer(tinygen.tensor(x))
    assert logdet.shape == (len(x),)
    back = layer.inverse(y).detach().numpy()
    assert np.max(np.abs(back - x)) <= INVERSE_TOL
    for i in range(len(x)):   # per sample (each sample's Jacobian is its own block)
        jac = jacobian(lambda v: layer(v)[0].reshape(1, -1), x[i:i + 1])
        expect = log_abs_det(jac)
        assert abs(expect - float(logdet.detach().numpy()[i])) <= 1e-9 * (1 + abs(expect))
    return y.detach().numpy(), logdet.detach().numpy()


def mlp(dim, hidden):
    return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))


# -- layers --------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(data=st.data())
def test_fully_connected_coupling_inverts_and_logdet_is_log_det_jacobian(data):
    dim = data.draw(st.integers(2, 6))
    mask = data.draw(hnp.arrays(np.float32, dim, elements=st.sampled_from([0.0, 1.0])))
    tinygen.manual_seed(data.draw(st.integers(0, 100)))
    layer = randomize(AffineCoupling(mask, mlp(dim, 5), mlp(dim, 5)), seed=dim)
    x = data.draw(hnp.arrays(np.float64, (2, dim), elements=st.floats(-2, 2)))
    y, logdet = check_layer(layer, x)
    np.testing.assert_array_equal(y[:, mask == 1], x[:, mask == 1])


@settings(max_examples=8)
@given(c=st.sampled_from([1, 2]), h=st.integers(2, 4), w=st.integers(2, 4),
       parity=st.integers(0, 1), bounded=st.booleans())
def test_checkerboard_coupling_inverts_and_logdet_is_log_det_jacobian(c, h, w, parity, bounded):
    mask = checkerboard_mask(h, w, parity)
    assert mask.shape == (1, h, w) and mask.sum() == (h * w + (1 - parity) * (h * w % 2)) // 2
    layer = randomize(AffineCoupling(mask, CouplingResNet(c, 3, 1), bounded_scale=bounded))
    x = np.random.default_rng(h * w).standard_normal((2, c, h, w))
    y, _ = check_layer(layer, x)
    keep = np.broadcast_to(mask, x.shape[1:]) == 1
    np.testing.assert_array_equal(y[:, keep], x[:, keep])


@settings(max_examples=6)
@given(c=st.sampled_from([2, 4]), h=st.integers(1, 3), w=st.integers(1, 3),
       parity=st.integers(0, 1))
def test_channel_coupling_inverts_and_logdet_is_log_det_jacobian(c, h, w, parity):
    mask = channel_mask(c, parity)
    assert mask.shape == (c, 1, 1) and mask.sum() == c // 2
    layer = randomize(AffineCoupling(mask, CouplingResNet(c, 3, 1), bounded_scale=True))
    x = np.random.default_rng(c + h).standard_normal((2, c, h, w))
    check_layer(layer, x)


@given(c=st.integers(1, 3), h=st.sampled_from([2, 4]), w=st.sampled_from([2, 4, 6]))
def test_squeeze_is_the_2x2_space_to_depth_permutation(c, h, w):
    x = np.random.default_rng(0).standard_normal((2, c, h, w))
    y, logdet = check_layer(Squeeze(), x)
    np.testing.assert_array_equal(logdet, 0.0)
    assert y.shape == (2, 4 * c, h // 2, w // 2)
    for ch in range(c):                      # y[n, 4c + 2i + j, a, b] = x[n, c, 2a + i, 2b + j]
        for i in range(2):
            for j in range(2):
                np.testing.assert_array_equal(y[:, 4 * ch + 2 * i + j], x[:, ch, i::2, j::2])


def test_factor_out_inverts_and_is_volume_preserving():
    x = np.random.default_rng(1).standard_normal((2, 4, 2, 3))
    layer = FactorOut()
    h, z = layer(tinygen.tensor(x))
    assert h.shape == z.shape == (2, 2, 2, 3)
    assert np.max(np.abs(layer.inverse(h, z).numpy() - x)) == 0.0
    jac = jacobian(lambda v: tinygen.cat([t.reshape(1, -1) for t in layer(v)[::-1]], dim=1),
                   x[:1])
    assert abs(log_abs_det(jac)) <= 1e-12          # a permutation: |det| = 1


@given(x=hnp.arrays(np.float64, (2, 1, 2, 3), elements=st.floats(0.001, 0.999)),
       alpha=st.sampled_from([0.0, 0.05, 1e-6]))
def test_logit_preprocessing_inverts_and_logdet_is_log_det_jacobian(x, alpha):
    pre = DequantizeLogit(256, alpha)
    y, logdet = pre.forward_continuous(tinygen.tensor(x))
    assert np.max(np.abs(pre.inverse_continuous(y).numpy() - x)) <= INVERSE_TOL
    for i in range(2):
        jac = jacobian(lambda v: pre.forward_continuous(v)[0].reshape(1, -1), x[i:i + 1])
        assert abs(log_abs_det(jac) - logdet.numpy()[i]) <= 1e-9 * (1 + abs(logdet.numpy()[i]))


def test_dequantization_round_trip_and_its_log_det_term():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (3, 1, 4, 4)) / 255.0
    pre = DequantizeLogit(256, 0.05)
    for dtype in (np.float64, np.float32):
        x = pixels.astype(dtype)
        u = rng.random(x.shape).astype(dtype)
        u[0, 0, 0, :2] = [0.0, np.nextafter(dtype(1), dtype(0))]    # the bin's two edges
        v = pre.dequantize(x, u).numpy()
        k = np.round(pixels * 255)
        assert np.all(v >= k / 256) and np.all(v < (k + 1) / 256)     # inside the pixel's bin
        np.testing.assert_array_equal(pre.quantize(v), x)              # exact, edges included
        # through the logit and back: exact unless v is within rounding error of a bin edge
        u = (1e-3 + (1 - 2e-3) * rng.random(x.shape)).astype(dtype)
        y, logdet = pre(tinygen.tensor(x), u)
        np.testing.assert_array_equal(pre.inverse(y), x)               # back to the pixels
        v = pre.dequantize(x, u).numpy()
        _, cont = pre.forward_continuous(tinygen.tensor(v))
        np.testing.assert_allclose(logdet.numpy(), cont.numpy() - 16 * math.log(256),
                                   rtol=1e-6)


@settings(max_examples=10)
@given(dim=st.integers(2, 5), depth=st.integers(1, 5), seed=st.integers(0, 50))
def test_whole_nvpnet_inverts_and_logdet_is_log_det_jacobian(dim, depth, seed):
    net = randomize(NVPNet(dim, 4, depth, np.random.default_rng(seed)), seed=seed)
    masks = [layer.mask.numpy() for layer in net.layers]
    for d, b in enumerate(masks):        # random halves, complemented on odd layers
        assert b.sum() == dim // 2 if d % 2 == 0 else b.sum() == dim - dim // 2
        if d % 2:
            np.testing.assert_array_equal(b, 1 - masks[d - 1])
    x = np.random.default_rng(seed).standard_normal((2, dim))
    check_layer(net, x)


@pytest.mark.parametrize("shape,scales", [((1, 8, 8), 2), ((2, 4, 4), 1), ((1, 4, 4), 2)])
def test_whole_multiscale_flow_inverts_and_logdet_is_log_det_jacobian(shape, scales):
    flow = randomize(MultiScaleFlow(shape, scales=scales, width=3, blocks=1, checker=2,
                                    channel=2, final=2), std=0.2)
    x = np.random.default_rng(3).standard_normal((2,) + shape)
    z, logdet = flow(tinygen.tensor(x))
    assert z.shape == (2, int(np.prod(shape)))
    assert np.max(np.abs(flow.inverse(z).detach().numpy() - x)) <= INVERSE_TOL
    jac = jacobian(lambda v: flow(v)[0], x[:1])
    assert abs(log_abs_det(jac) - logdet.detach().numpy()[0]) <= 1e-9 * (1 + abs(logdet.detach().numpy()[0]))


def test_realnvp_model_inverts_exactly_at_28x28_and_its_likelihood_is_the_change_of_variables():
    cfg = RealNVP.Config(width=4, blocks=1, checker=1, channel=1, final=1)
    model = randomize(RealNVP(cfg), std=0.05)
    images = np.round(load_embedded_mnist().images[:2].astype(np.float64) * 255) / 255
    u = np.random.default_rng(0).random(images.shape)
    y, _ = model.preprocess(images, u)
    z, _ = model.flow(y)
    assert np.max(np.abs(model.flow.inverse(z).detach().numpy() - y.detach().numpy())) <= INVERSE_TOL
    np.testing.assert_array_equal(model.preprocess.inverse(model.flow.inverse(z)), images)
    # on a 1x4x4 flow: log_likelihood = log N(z) + log |det dz/dv| - D log 256, brute force
    model.flow = randomize(MultiScaleFlow((1, 4, 4), 2, 3, 1, 1, 1, 1), std=0.3)
    pix = np.random.default_rng(1).integers(0, 256, (1, 1, 4, 4)) / 255.0
    noise = np.random.default_rng(2).random(pix.shape)
    v = model.preprocess.dequantize(pix, noise).numpy()
    ll = model.log_likelihood(tinygen.tensor(pix), noise).detach().numpy()[0]
    jac = jacobian(lambda t: model.flow(model.preprocess.forward_continuous(t)[0])[0], v)
    zz = model.flow(model.preprocess.forward_continuous(tinygen.tensor(v))[0])[0]
    expect = standard_normal_logpdf(zz).detach().numpy()[0] + log_abs_det(jac) - 16 * math.log(256)
    assert abs(ll - expect) <= 1e-9 * abs(expect)


# -- the lecture's Jacobian-structure example ------------------------------------------------------
@settings(max_examples=10)
@given(dim=st.integers(2, 8), data=st.data())
def test_lecture_jacobian_is_lower_triangular_after_reordering(dim, data):
    """dim = 6, b = first half, s, t = Linear + Tanh in the lecture; here any dim and mask:
    rows with b_i = 1 are e_i, and J_ij = 0 when b_i = b_j = 0 and i != j, so putting the b = 1
    coordinates first makes J lower triangular with diagonal (1 .. 1, exp(s_i) ..)."""
    if dim == 6 and data.draw(st.booleans()):
        mask = np.array([1, 1, 1, 0, 0, 0], np.float32)       # the lecture's b
    else:
        mask = data.draw(hnp.arrays(np.float32, dim, elements=st.sampled_from([0.0, 1.0])))
    tinygen.manual_seed(dim)
    s_net = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
    t_net = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
    layer = AffineCoupling(mask, s_net, t_net).double()
    x = np.random.default_rng(dim).standard_normal((1, dim))
    jac = jacobian(lambda v: layer(v)[0], x)
    order = np.argsort(1 - mask, kind="stable")               # b = 1 first, then b = 0
    reordered = jac[np.ix_(order, order)]
    np.testing.assert_array_equal(np.triu(reordered, 1), 0.0)
    with tinygen.no_grad():
        s = s_net(tinygen.tensor(x * mask)).numpy()[0]
    np.testing.assert_allclose(np.diag(jac), np.where(mask == 1, 1.0, np.exp(s)), rtol=1e-12)
    logdet = layer(tinygen.tensor(x))[1].detach().numpy()[0]
    np.testing.assert_allclose(np.log(np.prod(np.diag(reordered))), logdet, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(log_abs_det(jac), logdet, rtol=1e-10, atol=1e-12)


def test_masks():
    b = half_mask(7, np.random.default_rng(0))
    assert b.sum() == 3 and set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_array_equal(checkerboard_mask(2, 3, 0)[0], [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(checkerboard_mask(2, 3, 1)[0], [[0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(channel_mask(4, 1)[:, 0, 0], [0, 0, 1, 1])


def test_layers_reject_bad_input():
    with pytest.raises(ValueError, match="only 0 and 1"):
        AffineCoupling(np.array([0.5, 1.0]), mlp(2, 2), mlp(2, 2))
    with pytest.raises(ValueError, match=r"even, got shape \(1, 1, 3, 4\)"):
        Squeeze()(tinygen.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\), got shape \(2, 4\)"):
        Squeeze()(tinygen.zeros(2, 4))
    with pytest.raises(ValueError, match="even number"):
        FactorOut()(tinygen.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="channels must be even"):
        channel_mask(3)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*scales = 4"):
        MultiScaleFlow((1, 6, 6), scales=2)
    with pytest.raises(ValueError, match="alpha must be in"):
        DequantizeLogit(256, 0.5)
    with pytest.raises(ValueError, match=r"z must be \(N, 16\)"):
        MultiScaleFlow((1, 4, 4), 1, 2, 0, 1, 1, 1).inverse(tinygen.zeros(1, 15))
    with pytest.raises(ValueError, match="2 x 2 channels"):
        layer = AffineCoupling(channel_mask(2), CouplingResNet(2, 2, 0))
        layer.s_net = nn.Conv2d(2, 2, 1)
        layer(tinygen.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        RealNVP(RealNVP.Config(temperature=0.0))
    with pytest.raises(ValueError, match="dataset must be one of"):
        NVPToy(NVPToy.Config(dataset="spirals"))
    with pytest.raises(ValueError, match="clip_grad and warmup_steps must be >= 0"):
        RealNVP(RealNVP.Config(clip_grad=-1.0))


def test_realnvp_clipping_and_schedule_reach_its_training_phase():
    from tinygen.models import RunData
    small = dict(width=4, scales=1, checker=1, channel=1, final=1)
    data = RunData(load_embedded_mnist().subset(np.arange(8)), None)
    (plain,) = RealNVP(RealNVP.Config(**small)).phases(data)
    assert plain.clip_grad_norm is None and plain.lr_schedule is None   # the default recipe
    (phase,) = RealNVP(RealNVP.Config(**small, clip_grad=50.0, warmup_steps=10,
                                      cosine_lr=True)).phases(data)
    assert phase.clip_grad_norm == 50.0
    factors = [phase.lr_schedule(step, 110) for step in (0, 9, 10, 60, 110)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.55, 0.1])
    # warm-up alone: the rate stays at lr afterwards
    (warm,) = RealNVP(RealNVP.Config(**small, warmup_steps=4)).phases(data)
    assert [warm.lr_schedule(s, 100) for s in (0, 3, 50, 99)] == pytest.approx([0.25, 1, 1, 1])


# -- models --------------------------------------------------------------------------------------
def test_both_flow_models_are_registered():
    assert MODELS["nvp-toy"] is NVPToy and MODELS["realnvp"] is RealNVP


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """nvp-toy trained briefly on two moons through the full run (CLI path)."""
    from tinygen.train import TrainConfig
    from tinygen.train.run import train_model
    out = tmp_path_factory.mktemp("nvp-toy")
    cfg = TrainConfig(epochs=25, batch_size=100, lr=5e-3, seed=0, out=str(out), progress=False,
                      log_every=1000)
    results = train_model("nvp-toy", cfg, {"hidden": 32, "depth": 6})
    return out, results


def test_nvp_toy_beats_a_gaussian_on_moons_and_writes_its_pictures(toy_run):
    from tinygen.data import load_toy_data
    from tinygen.models.registry import model_from_checkpoint
    from tinygen.train.run import sample_checkpoint
    out, results = toy_run
    data, _ = load_toy_data("moons")
    x = data.train.images.astype(np.float64)
    mu, cov = x.mean(axis=0), np.cov(x.T)
    diff = data.test.images - mu               # the baseline: a full-covariance Gaussian
    gauss_nll = float(np.mean(0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                              + 0.5 * np.log(np.linalg.det(2 * np.pi * cov))))
    assert results["test_nll_nats"] < gauss_nll - 0.3, (results["test_nll_nats"], gauss_nll)
    for name in ("density.png", "samples.png", "latent.png", "loss.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000
    path = sample_checkpoint(os.path.join(out, "model.ckpt"), n=200, out=str(out / "s.png"))
    assert os.path.getsize(path) > 1000
    model, _ = model_from_checkpoint(os.path.join(out, "model.ckpt"))
    assert model.evaluate(data.test)["nll_nats"] == pytest.approx(results["test_nll_nats"],
                                                                   rel=1e-6)


def test_nvp_toy_density_integrates_to_one_and_samples_follow_it(toy_run):
    from tinygen.models.registry import model_from_checkpoint
    out, _ = toy_run
    model, _ = model_from_checkpoint(os.path.join(out, "model.ckpt"))
    xs = np.linspace(-5, 6, 551)
    ys = np.linspace(-5, 5, 501)
    gx, gy = np.meshgrid(xs, ys)
    logp = model.log_density(np.stack([gx.ravel(), gy.ravel()], axis=1))
    mass = np.exp(logp).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(mass - 1.0) < 0.02, mass
    samples = model.sample(4000, np.random.default_rng(0))
    assert samples.shape == (4000, 2)
    z = model.latent(samples)                  # f(f^-1(z)) = z: samples map back to N(0, I)
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1.0) < 0.05


def test_realnvp_training_beats_the_uniform_baseline_and_generates(tmp_path):
    from tinygen.train import Trainer, TrainConfig
    from tinygen.models import RunData
    tinygen.manual_seed(0)
    cfg = RealNVP.Config(width=8, blocks=0, checker=2, channel=2, final=2, temperature=0.5)
    model = RealNVP(cfg)
    digits = load_embedded_mnist()
    train = digits.subset(np.arange(64))
    val = digits.subset(np.arange(64, 96))
    before = model.evaluate(val)
    assert before["bits_per_dim"] == pytest.approx(before["nll_nats"] / (784 * math.log(2)))
    tc = TrainConfig(epochs=6, batch_size=16, lr=3e-3, seed=0, out=str(tmp_path),
                     progress=False, log_every=1000)
    Trainer(model, model.phases(RunData(train, val)), (train.images, train.labels), tc).fit()
    after = model.evaluate(val)
    # uniform over the 256 levels of every pixel is 8 bits/dim
    assert after["bits_per_dim"] < 8.0 < before["bits_per_dim"], (before, after)
    rng = np.random.default_rng(0)
    for t in (1.0, 0.5):
        s = model.sample(5, rng, temperature=t)
        assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, rng, temperature=-1.0)
    x0, x1 = val.images[:3], val.images[3:6]
    path = model.interpolate(x0, x1, steps=5)
    assert path.shape == (3, 5, 1, 28, 28)
    # the end points decode back to the (dequantized) images: within one pixel level
    assert np.max(np.abs(path[:, 0] - x0)) <= 1.5 / 255
    assert np.max(np.abs(path[:, -1] - x1)) <= 1.5 / 255
    paths = model.pictures(str(tmp_path), val, rng)
    assert [os.path.basename(p) for p in paths] == ["samples.png", "samples_t0.5.png",
                                                    "interpolations.png"]
    assert all(os.path.getsize(p) > 500 for p in paths)
