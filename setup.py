"""HIPTrack-CLS: HIPTrack with an auxiliary maritime-challenge classification head."""
from setuptools import find_packages, setup

setup(
    name="hiptrack-cls",
    version="0.1.0",
    description="HIPTrack single-object tracker with multi-task maritime challenge classification",
    python_requires=">=3.10",
    packages=find_packages(include=["lib", "lib.*"]),
    install_requires=[
        "torch",
        "torchvision",
        "timm>=1.0",
        "numpy",
        "opencv-python-headless",
        "pyyaml",
        "tensorboard",
        "tqdm",
        "matplotlib",
        "safetensors",
    ],
    extras_require={"jpeg": ["jpeg4py"], "test": ["pytest"]},
)
