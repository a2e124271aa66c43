"""vae.VAE: every method, the errors, save/load both ways with the vae program, parity with
it, zero copies, the GIL, Ctrl-C."""
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import vae
from conftest import HERE, ROOT, run, table

# ------------------------------------------------------------------ fitting


def test_fit_returns_self_and_records_history(fmnist):
    X, _ = fmnist
    m = vae.VAE(encoder=(64,), decoder=(64,), latent=4, epochs=3, verbose=0, threads=1)
    assert m.fit(X) is m
    assert [h["epoch"] for h in m.history_] == [1, 2, 3]
    assert m.history_[-1]["loss"] < m.history_[0]["loss"]
    for h in m.history_:
        assert abs(h["loss"] - (h["recon"] + h["kl"])) < 1e-6 * h["loss"]
    assert m.n_features_in_ == 784 and m.latent_dim_ == 4


def test_validation_data_and_callback_stop(fmnist):
    X, _ = fmnist
    seen = []
    m = vae.VAE(encoder=(32,), decoder=(32,), latent=2, epochs=10, verbose=0, threads=1)
    m.fit(X[:1500], validation_data=X[1500:], callback=lambda s: seen.append(s) or s["epoch"] == 2)
    assert len(m.history_) == 2 and len(seen) == 2  # stopped exactly at the second epoch's end
    assert all("val_loss" in h and np.isfinite(h["val_loss"]) for h in m.history_)


def test_fit_is_deterministic_and_seeded(fmnist):
    X, _ = fmnist
    kw = dict(encoder=(32,), decoder=(32,), latent=2, epochs=1, verbose=0, threads=1)
    a, b = vae.VAE(seed=5, **kw).fit(X), vae.VAE(seed=5, **kw).fit(X)
    c = vae.VAE(seed=6, **kw).fit(X)
    wa, wb, wc = a.weights(), b.weights(), c.weights()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)


def test_batch_threads_auto_says_its_choice(fmnist):
    """batch_threads="auto" times the splits of two threads; the choice it records, given
    again, trains the same bits"""
    X, _ = fmnist
    kw = dict(encoder=(32,), decoder=(32,), latent=2, epochs=1, verbose=0, threads=2)
    a = vae.VAE(batch_threads="auto", **kw).fit(X[:500])
    assert a.batch_threads_ in (True, False, "prepacked")
    b = vae.VAE(batch_threads=a.batch_threads_, **kw).fit(X[:500])
    wa, wb = a.weights(), b.weights()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    c = vae.VAE(batch_threads="prepacked", **kw).fit(X[:500])
    assert c.batch_threads_ == "prepacked"
    with pytest.raises(ValueError, match="batch_threads"):
        vae.VAE(batch_threads="fast", **kw).fit(X[:100])
    with pytest.raises(ValueError, match="batch_threads=True: free bits"):
        vae.VAE(batch_threads=True, free_bits=0.5, **kw).fit(X[:100])
    with pytest.raises(ValueError, match="batch_threads=True: the threads split the CPU's"):
        vae.VAE(batch_threads=True, device="cuda", **kw).fit(X[:100])


def test_bf16_precision(fmnist):
    """precision="bf16": the CPU's products in bf16, the ELBO within 0.5% of fp32's (or
    refused, saying why, where the CPU or the build cannot)"""
    X, _ = fmnist
    kw = dict(encoder=(64,), decoder=(64,), latent=4, epochs=2, verbose=0, threads=1,
              backend="onednn")
    with pytest.raises(ValueError, match="tf32.*GPU"):  # (refused on any CPU)
        vae.VAE(precision="tf32", device="cpu", **dict(kw, backend=None)).fit(X[:100])
    with pytest.raises(ValueError, match="bf16.*oneDNN.*openblas"):  # not replaced by oneDNN
        vae.VAE(precision="bf16", **dict(kw, backend="openblas")).fit(X[:100])
    try:
        b = vae.VAE(precision="bf16", **kw).fit(X[:1000])
    except vae.VAEError as e:
        assert "bf16" in str(e) or "oneDNN" in str(e)
        pytest.skip(str(e))
    f = vae.VAE(**kw).fit(X[:1000])
    eb, ef = b.elbo(X[1000:1500])["elbo"].mean(), f.elbo(X[1000:1500])["elbo"].mean()
    assert abs(eb - ef) <= 0.005 * abs(ef) and eb != ef


def test_variance_options_that_do_nothing_are_refused(fmnist, tmp_path):
    """as the program refuses them: a variance without a Gaussian, sigma with a learned
    variance, a floor with a fixed one; a saved model's parameters (float32) fit again"""
    X, _ = fmnist
    kw = dict(encoder=(8,), decoder=(8,), latent=2, epochs=1, verbose=0, threads=1)
    for bad in (dict(variance="dim"), dict(sigma=0.5), dict(variance_floor=0.01),
                dict(likelihood="gaussian", variance="dim", sigma=0.5),
                dict(likelihood="gaussian", variance_floor=0.01)):
        with pytest.raises(ValueError, match="variance|sigma"):
            vae.VAE(**kw, **bad).fit(X[:50])
    for good in (dict(), dict(likelihood="gaussian", variance="dim", variance_floor=0.01)):
        vae.VAE(**kw, **good).fit(X[:50]).save(tmp_path / "m.safetensors")
        params = vae.load(tmp_path / "m.safetensors").get_params()
        vae.VAE(**dict(params, epochs=1, verbose=0)).fit(X[:50])


def test_progress_bar_on_stderr_and_quiet(fmnist, capsys):
    X, _ = fmnist
    vae.VAE(encoder=(16,), decoder=(16,), latent=2, epochs=1, threads=1).fit(X[:500])
    assert "epoch 1/1: loss" in capsys.readouterr().err
    vae.VAE(encoder=(16,), decoder=(16,), latent=2, epochs=1, threads=1, verbose=0).fit(X[:500])
    assert capsys.readouterr().err == ""

# ------------------------------------------------------------------ using a model


def test_transform_means_and_draws(small_model, fmnist):
    X, _ = fmnist
    Z = small_model.transform(X[:100])
    assert Z.shape == (100, 4) and Z.dtype == np.float32
    assert np.array_equal(Z, small_model.transform(X[:100]))
    D1 = small_model.transform(X[:100], sample=True, seed=3)
    D2 = small_model.transform(X[:100], sample=True, seed=3)
    D3 = small_model.transform(X[:100], sample=True, seed=4)
    assert np.array_equal(D1, D2) and not np.array_equal(D1, D3)
    assert 0 < np.abs(D1 - Z).mean() < 5


def test_inverse_transform_and_reconstruct(small_model, fmnist):
    X, _ = fmnist
    out = small_model.inverse_transform(np.zeros((3, 4), np.float32))
    assert out.shape == (3, 784) and out.min() >= 0 and out.max() <= 1
    R = small_model.reconstruct(X[:200])
    # the reconstructions are closer to their images than the mean image is
    own = ((R - X[:200]) ** 2).mean()
    mean_image = ((X[:200] - X.mean(axis=0)) ** 2).mean()
    assert own < 0.7 * mean_image, (own, mean_image)


def test_sample_is_seeded(small_model):
    a, b, c = small_model.sample(8, seed=2), small_model.sample(8, seed=2), small_model.sample(8, seed=9)
    assert a.shape == (8, 784) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_elbo_split_and_importance_sampling(small_model, fmnist):
    X, _ = fmnist
    e = small_model.elbo(X[:300])
    assert np.allclose(e["elbo"], -(e["recon"] + e["kl"]))
    assert (e["kl"] >= 0).all()
    ll = small_model.score_samples(X[:300], k=100)
    # the importance-weighted bound is tighter than the ELBO on average
    assert ll.mean() > e["elbo"].mean()
    assert small_model.score(X[:300], k=100) == pytest.approx(ll.mean())


def test_active_units(small_model, fmnist):
    X, _ = fmnist
    assert 1 <= small_model.active_units(X[:1000]) <= 4


def test_impute_keeps_observed_values():
    T = table()
    rng = np.random.default_rng(0)
    holes = T.copy()
    holes[rng.random(T.shape) < 0.3] = np.nan
    holes[:, 0][np.isnan(holes).all(axis=1)] = T[:, 0][np.isnan(holes).all(axis=1)]
    m = vae.VAE(preset=None, encoder=(32,), decoder=(32,), latent=2, likelihood="gaussian",
                missing=True, standardize=True, iwae=5, epochs=100, batch_size=40, verbose=0,
                threads=1).fit(holes)
    filled = m.impute(holes)
    observed = ~np.isnan(holes)
    assert np.array_equal(filled[observed], holes[observed])
    assert not np.isnan(filled).any()
    err = ((filled - T)[~observed] ** 2).mean()
    col_mean = np.nanmean(holes, axis=0)
    base = ((np.broadcast_to(col_mean, T.shape) - T)[~observed] ** 2).mean()
    assert err < base  # the model beats column means
    draws = m.impute(holes, multiple=3)
    assert draws.shape == (3,) + T.shape and np.array_equal(draws[1][observed], holes[observed])
    assert not np.array_equal(draws[0][~observed], draws[1][~observed])  # draws, not means


def test_conditional_model(fmnist):
    X, y = fmnist
    m = vae.VAE(encoder=(64,), decoder=(64,), latent=4, conditional=True, epochs=2, verbose=0,
                threads=1).fit(X, y)
    assert m.config_.n_classes == 10
    s1, s7 = m.sample(200, label=1, seed=1), m.sample(200, label=7, seed=2)
    again = m.sample(200, label=1, seed=3)
    # two classes' mean images differ more than two draws of the same class
    between = np.abs(s1.mean(0) - s7.mean(0)).mean()
    within = np.abs(s1.mean(0) - again.mean(0)).mean()
    assert between > 3 * within, (between, within)
    with pytest.raises(ValueError, match="label"):
        m.sample(5)
    with pytest.raises(ValueError, match="labels"):
        m.transform(X[:5])


def test_standardized_gaussian_works_in_data_units():
    T = table()
    m = vae.VAE(preset=None, encoder=(32,), decoder=(32,), latent=2, likelihood="gaussian",
                standardize=True, epochs=40, batch_size=50, verbose=0, threads=1).fit(T)
    R = m.reconstruct(T)
    assert abs(R.mean() - T.mean()) < 1.0  # in the data's units (mean 10), not standardized
    assert np.abs(R - T).mean() < np.abs(T - T.mean(0)).mean()

# ------------------------------------------------------------------ errors


def test_library_errors_carry_its_message(fmnist):
    X, _ = fmnist
    with pytest.raises(vae.VAEInputError, match=r"value 250 is 1.4, outside what a bernoulli likelihood models") as e:
        vae.VAE(epochs=1, verbose=0).fit(X * 3)
    assert isinstance(e.value, vae.VAEError) and isinstance(e.value, ValueError)
    assert e.value.status == 1
    with pytest.raises(vae.VAEError, match="no such file|cannot open|No such"):
        vae.VAE.load("/nonexistent/model.safetensors")


def test_bad_arrays_refused_before_any_work(small_model, fmnist):
    X, _ = fmnist
    with pytest.raises(ValueError, match="2-D"):
        vae.VAE(verbose=0).fit(X[0])
    with pytest.raises(ValueError, match="NaN"):
        bad = X[:10].copy()
        bad[3, 5] = np.nan
        vae.VAE(verbose=0).fit(bad)
    with pytest.raises(ValueError, match="784 features"):
        small_model.transform(X[:5, :100])
    with pytest.raises(ValueError, match="infinity"):
        bad = X[:10].copy()
        bad[0, 0] = np.inf
        small_model.transform(bad)
    with pytest.raises(ValueError, match="0 sample"):
        vae.VAE(verbose=0).fit(np.zeros((0, 5), np.float32))


def test_not_fitted():
    with pytest.raises(vae.NotFittedError, match="not fitted"):
        vae.VAE().transform(np.zeros((2, 3), np.float32))


def test_params_protocol():
    m = vae.VAE(latent=3)
    p = m.get_params()
    assert p["latent"] == 3 and p["preset"] == "pytorch" and "epochs" in p
    assert m.set_params(latent=5, epochs=2) is m and m.latent == 5
    with pytest.raises(ValueError, match="Invalid parameter"):
        m.set_params(no_such=1)
    assert repr(vae.VAE(latent=3)) == "VAE(latent=3)"

# ------------------------------------------------------------------ files and the program


def test_save_load_roundtrip(small_model, fmnist, tmp_path):
    X, _ = fmnist
    path = tmp_path / "m.safetensors"
    small_model.save(path)
    back = vae.load(path, threads=1)
    wa, wb = small_model.weights(), back.weights()
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert np.array_equal(small_model.transform(X[:50]), back.transform(X[:50]))
    assert back.get_params()["latent"] == 4


def test_pickle_roundtrip(small_model, fmnist):
    X, _ = fmnist
    back = pickle.loads(pickle.dumps(small_model))
    assert np.array_equal(back.transform(X[:20]), small_model.transform(X[:20]))


def test_program_reads_python_models(program, small_model, tmp_path):
    path = tmp_path / "m.safetensors"
    small_model.save(path)
    info = run(program, "info", path)
    assert "784-64-(4)-64-784" in info and "finished 5 epochs" in info
    run(program, "sample", path, "-n", 6, "--npy", tmp_path / "s.npy", "--seed", 4, "-q", "-t", 1)
    assert np.array_equal(np.load(tmp_path / "s.npy"), small_model.sample(6, seed=4))


def test_python_reads_program_models(program, fmnist, tmp_path):
    X, _ = fmnist
    np.save(tmp_path / "x.npy", X[:500])
    run(program, "train", "--train", tmp_path / "x.npy", "--encoder", 32, "--decoder", 32,
        "--latent", 3, "--epochs", 1, "--no-test", "--out", tmp_path / "run", "-q", "-t", 1)
    m = vae.load(tmp_path / "run" / "model.safetensors", threads=1)
    w = vae.read_safetensors(tmp_path / "run" / "model.safetensors")
    assert all(np.array_equal(w[k], m.weights()[k]) for k in w)
    run(program, "encode", tmp_path / "run" / "model.safetensors", tmp_path / "x.npy", "-o",
        tmp_path / "z.npy", "-q", "-t", 1)
    z = np.load(tmp_path / "z.npy")  # mu then logvar, float64
    assert np.array_equal(z[:, :3].astype(np.float32), m.transform(X[:500]))


def test_parity_with_the_program(program, fmnist, tmp_path):
    """VAE(preset="pytorch", seed=1).fit(X, epochs=3) == vae train --preset pytorch --epochs 3
    --seed 1 on the same data and threads: bit for bit."""
    X, _ = fmnist
    np.save(tmp_path / "x.npy", X)
    run(program, "train", "--train", tmp_path / "x.npy", "--preset", "pytorch", "--epochs", 3,
        "--seed", 1, "--no-test", "--out", tmp_path / "run", "-q", "-t", 2)
    cli = vae.read_safetensors(tmp_path / "run" / "model.safetensors")
    py = vae.VAE(preset="pytorch", seed=1, threads=2, verbose=0).fit(X, epochs=3).weights()
    assert cli.keys() == py.keys()
    for k in cli:
        assert np.array_equal(cli[k], py[k]), k

# ------------------------------------------------------------------ memory, GIL, Ctrl-C


def test_float32_arrays_are_not_copied(small_model, fmnist):
    X, _ = fmnist
    assert small_model._array(X) is X
    Xd = X.astype(np.float64)
    assert small_model._array(Xd) is not Xd and small_model._array(Xd).dtype == np.float32


def _subprocess(code, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_transform_allocates_little(fmnist):
    """transform of 10,000 x 784 allocates no more than its output plus 1 MiB: Python's
    allocations by tracemalloc, the library's (and everything else's) by the peak resident
    memory of a fresh process."""
    code = """
import resource, tracemalloc, numpy as np, vae
X, _ = vae.load_fashion_mnist("t10k")
m = vae.VAE(encoder=(64,), decoder=(64,), latent=20, epochs=1, verbose=0, threads=1).fit(X[:500])
m.transform(X[:600])  # the first call sizes the BLAS's own buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tracemalloc.start()
Z = m.transform(X)
py_peak = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(Z.nbytes, py_peak, after - before)
"""
    p = _subprocess(code)
    assert p.returncode == 0, p.stderr
    out, py_peak, rss = map(int, p.stdout.split())
    assert py_peak <= out + (1 << 20), (out, py_peak)
    assert rss <= out + (1 << 20), (out, rss)


def test_gil_released_during_fit(fmnist):
    X, _ = fmnist
    m = vae.VAE(encoder=(256,), decoder=(256,), latent=8, epochs=3, verbose=0, threads=1)
    count = 0
    done = threading.Event()

    def fit():
        m.fit(X)
        done.set()
    t = threading.Thread(target=fit)
    t0 = time.monotonic()
    t.start()
    while not done.is_set():
        count += 1
    t.join()
    elapsed = time.monotonic() - t0
    # the main thread kept running: at least 10,000 loop turns a second
    assert count > 10000 * elapsed, (count, elapsed)


def test_ctrl_c_stops_at_a_step_and_leaves_the_model_usable():
    code = """
import os, signal, threading, numpy as np, vae
X, _ = vae.load_fashion_mnist("t10k")
m = vae.VAE(encoder=(128,), decoder=(128,), latent=4, epochs=1000, verbose=0, threads=1)
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    m.fit(X)
    print("not interrupted")
except KeyboardInterrupt as e:
    z = m.transform(X[:10])
    print("interrupted", len(m.history_), z.shape, np.isfinite(z).all())
"""
    p = _subprocess(code)
    assert p.returncode == 0, p.stderr
    words = p.stdout.split()
    assert words[0] == "interrupted" and int(words[1]) < 1000 and words[-1] == "True", p.stdout


def test_pip_installs_offline(tmp_path):
    """python3 -m pip install ./python in a virtual environment that sees Debian's numpy, with
    no network: the package and a copy of the library land there and import from there."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)],
                   check=True, timeout=120)
    python = str(env_dir / "bin" / "python")
    p = subprocess.run([python, "-m", "pip", "install", "--no-index", os.path.dirname(HERE)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_LIBRARY", "PYTHONPATH")}
    q = subprocess.run([python, "-c", "import vae; print(vae.__file__, vae.library_path)"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert q.returncode == 0, q.stderr
    module, library = q.stdout.split()
    assert module.startswith(str(env_dir)) and library.startswith(str(env_dir)), q.stdout
