"""Fixtures shared by several test folders: the real sample (5 photos with COCO boxes)."""

from pathlib import Path

import pytest

REAL_SAMPLE = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'real_sample'


@pytest.fixture(scope='session')
def real_sample():
    """The real-sample folder (annotations.json, images/, images.zip); skipped if absent."""
    if not (REAL_SAMPLE / 'annotations.json').is_file():
        pytest.skip(f'real sample data not found at {REAL_SAMPLE.resolve()}')
    return REAL_SAMPLE.resolve()
