"""Fixtures: a writable copy of the real sample (``real_sample``: tests/conftest.py)."""

import shutil

import pytest


@pytest.fixture
def sample_copy(real_sample, tmp_path):
    """A writable copy of the real sample (annotations.json and images/) in tmp_path."""
    shutil.copytree(real_sample / 'images', tmp_path / 'images')
    shutil.copy(real_sample / 'annotations.json', tmp_path / 'annotations.json')
    return tmp_path
