"""Packaging for nicbeam: the codec toolkit, its Beam transforms and the ``nicbeam`` console script."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
GCP = ["apache-beam[gcp]>=2.60,<3", "gcsfs>=2023.6"]

setup(
    name="nicbeam",
    version="0.1.0",
    description="Neural and classical image compression at corpus scale, with Apache Beam pipelines",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nicbeam", "nicbeam.*"]),
    package_data={"nicbeam": ["weights/*.safetensors", "weights/*.json"]},
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "Pillow>=10.0",
        "imagecodecs>=2024.1.1",
        "pyarrow>=14",
        "fsspec>=2023.6",
        "pandas>=2.0",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "apache-beam>=2.60,<3",
        # Any recent PyTorch: CPU machines install the CPU build first (see README), GPU workers a CUDA build.
        "torch>=2.1",
        "pytorch-msssim>=1.0",
        "constriction>=0.4",
        "PyWavelets>=1.4",
        "safetensors>=0.4",
        "tqdm>=4.60",
        # mlp-dpcm: its small integer matrix products run 100x slower with OpenBLAS threads on a busy 2-core CPU
        "threadpoolctl>=3.1",
        # mlp-dpcm: its wavefront loop is compiled (per-step numpy call overhead was most of the decode time)
        "numba>=0.60",
    ],
    extras_require={
        "gcp": GCP,
        # The test suite validates the Dataflow translation offline, so it installs the gcp extra too.
        "dev": ["pytest>=8", "pytest-timeout>=2.2", "duckdb>=1.0", "psnr-hvsm>=0.3", "bjontegaard>=1.3", *GCP],
    },
    entry_points={"console_scripts": ["nicbeam=nicbeam.pipelines.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Graphics :: Graphics Conversion",
    ],
)
