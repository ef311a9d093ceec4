"""The console's files ship inside the package: pyproject's package data takes `ui/static/*`,
which matches files, not folders, so the folder must stay flat (a subfolder would be served
nowhere and shipped nowhere)."""

from __future__ import annotations

import os
import tomllib

import api
from api.ui.static_files import STATIC_DIR, load

ROOT = os.path.dirname(os.path.dirname(api.__file__))


def test_the_static_folder_is_flat_and_shipped_as_package_data():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["api"]
    assert "ui/static/*" in package_data
    entries = os.listdir(STATIC_DIR)
    assert all(os.path.isfile(os.path.join(STATIC_DIR, e)) for e in entries), entries
    assert {"index.html", "app.js", "http.js", "style.css"} <= set(load())
