"""setup.py — `python3 -m pip install ./python` (offline: Debian's pip and setuptools, nothing
downloaded). The package takes a copy of the library built beside it (../build/libvae.so.0,
`make` first) so it works wherever it is installed; without one it uses the system's
(`make install`) or $VAE_LIBRARY."""
import os
import re
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def version():
    """The version defined once, in include/vae.h."""
    with open(os.path.join(ROOT, "include", "vae.h")) as f:
        parts = dict(re.findall(r"#define VAE_VERSION_(MAJOR|MINOR|PATCH) (\d+)", f.read()))
    return "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        built = os.path.join(ROOT, os.environ.get("VAE_BUILD", "build"), "libvae.so.0")
        if os.path.exists(built):
            target = os.path.join(self.build_lib, "vae", "libvae.so.0")
            shutil.copyfile(os.path.realpath(built), target)
            os.chmod(target, 0o755)
        else:
            print("vae: %s not found; the package will use the system's libvae.so.0" % built)


setup(
    name="vae",
    version=version(),
    description="Variational autoencoders over libvae: fit, transform, sample, score, impute",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=["vae"],
    python_requires=">=3.9",
    install_requires=["numpy"],
    cmdclass={"build_py": BuildWithLibrary},
    zip_safe=False,
)
