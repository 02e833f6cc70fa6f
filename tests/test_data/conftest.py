"""Fixtures: the real sample (5 photos with COCO boxes) and a writable copy of it."""

import shutil
from pathlib import Path

import pytest

REAL_SAMPLE = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'real_sample'


@pytest.fixture(scope='session')
def real_sample():
    """The real-sample folder (annotations.json, images/, images.zip); skipped if absent."""
    if not (REAL_SAMPLE / 'annotations.json').is_file():
        pytest.skip(f'real sample data not found at {REAL_SAMPLE.resolve()}')
    return REAL_SAMPLE.resolve()


@pytest.fixture
def sample_copy(real_sample, tmp_path):
    """A writable copy of the real sample (annotations.json and images/) in tmp_path."""
    shutil.copytree(real_sample / 'images', tmp_path / 'images')
    shutil.copy(real_sample / 'annotations.json', tmp_path / 'annotations.json')
    return tmp_path
