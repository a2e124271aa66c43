"""python.py — `VAE.fit` against `vae train` side by side: the same data (Fashion-MNIST's
60,000 training images), model (the pytorch preset), batch, seed and threads, alternating
runs; prints each one's training samples/s (the epochs after the first, as the library
measures them) and the ratio. Issue 14's goal: fit within 3% of the program.

    PYTHONPATH=python /usr/bin/python3 bench/python.py [--build build] [--epochs 3] [--rounds 3]
                                                        [--threads N]"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def program_rate(vae_program, epochs, threads, out):
    subprocess.run([vae_program, "train", "--preset", "pytorch", "--epochs", str(epochs),
                    "--no-test", "--threads", str(threads), "--out", out, "--force", "-q"],
                   check=True)
    with open(os.path.join(out, "train_log.csv")) as f:
        rows = list(csv.DictReader(f))
    return statistics.mean(float(r["samples_per_s"]) for r in rows[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    os.environ.setdefault("VAE_LIBRARY", os.path.abspath(os.path.join(a.build, "libvae.so.0")))
    import vae
    X, _ = vae.load_fashion_mnist("train")
    program = os.path.join(a.build, "vae")
    print("vae %s, %d threads, kernels %s, CPU: %s" % (
        vae.__version__, a.threads, vae._lib.lib.vae_blas_core().decode(),
        next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")))
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            cli = program_rate(program, a.epochs, a.threads, os.path.join(tmp, "run"))
            m = vae.VAE(preset="pytorch", epochs=a.epochs, threads=a.threads, verbose=0).fit(X)
            py = statistics.mean(h["samples_per_second"] for h in m.history_[1:])
            theirs.append(cli)
            ours.append(py)
            print("round %d: vae train %.0f samples/s, VAE.fit %.0f samples/s (%.3fx)"
                  % (r + 1, cli, py, py / cli))
    c, p = statistics.median(theirs), statistics.median(ours)
    print("median: vae train %.0f, VAE.fit %.0f samples/s: fit runs at %.1f%% of the program's "
          "speed" % (c, p, 100 * p / c))


if __name__ == "__main__":
    main()
