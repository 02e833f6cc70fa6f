"""Reading image bytes from a folder or straight out of a zip archive.

A path of the form ``<archive>.zip@/<member>`` (e.g. ``data/coco/train2017.zip@/000001.jpg`` or
``images.zip@/images/a.jpg``) names ``<member>`` inside ``<archive>.zip``; any other path is a
plain file. Open archives are cached per process: a handle is never shared across ``fork``
(dataloader workers reopen the archive the first time they read from it).
"""

import os
import os.path as osp
import zipfile

import mmcv

ZIP_MARK = '.zip@'

# {archive path: (pid that opened it, ZipFile)}
_ZIP_CACHE = {}


class ImageReadError(OSError):
    """An image is missing, unreadable or cannot be decoded."""


def split_zip_path(path):
    """``'a/b.zip@/c/d.jpg'`` -> ``('a/b.zip', 'c/d.jpg')``; ``None`` for a plain path."""
    if ZIP_MARK not in path:
        return None
    archive, member = path.split(ZIP_MARK, 1)
    return archive + '.zip', member.lstrip('/')


def join_prefix(prefix, filename):
    """Join an ``img_prefix`` (folder or ``x.zip@/inner/``) and an image file name."""
    if ZIP_MARK in prefix:
        return prefix.rstrip('/') + '/' + filename
    return osp.join(prefix, filename)


def check_prefix(prefix):
    """Raise ``FileNotFoundError`` naming ``prefix`` if its folder or zip archive is missing."""
    parts = split_zip_path(prefix)
    if parts is None:
        if not osp.isdir(prefix or '.'):
            raise FileNotFoundError(f'img_prefix {prefix!r}: image folder not found')
        return
    archive, member = parts
    if not osp.isfile(archive):
        raise FileNotFoundError(f'img_prefix {prefix!r}: zip archive {archive!r} not found')
    if member and not any(n.startswith(member) for n in _zip(archive).namelist()):
        raise FileNotFoundError(f'img_prefix {prefix!r}: no member of {archive!r} starts with {member!r}')


def _zip(archive):
    pid = os.getpid()
    cached = _ZIP_CACHE.get(archive)
    if cached is None or cached[0] != pid:
        try:
            _ZIP_CACHE[archive] = (pid, zipfile.ZipFile(archive, 'r'))
        except (OSError, zipfile.BadZipFile) as err:
            raise ImageReadError(f'cannot open zip archive {archive!r}: {err}') from err
    return _ZIP_CACHE[archive][1]


def read_bytes(path):
    """The raw bytes of ``path`` (plain file or ``x.zip@/member``); ``ImageReadError`` if absent."""
    parts = split_zip_path(path)
    try:
        if parts is None:
            with open(path, 'rb') as f:
                return f.read()
        archive, member = parts
        return _zip(archive).read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        if isinstance(err, ImageReadError):
            raise
        raise ImageReadError(f'cannot read image {path!r}: {err}') from err


def read_image(path):
    """Decode ``path`` to a ``uint8`` BGR array ``[H, W, 3]``; ``ImageReadError`` if it fails."""
    content = read_bytes(path)
    try:
        img = mmcv.imfrombytes(content, flag='color', channel_order='bgr')
    except Exception as err:  # decoders raise assorted errors on corrupt data
        raise ImageReadError(f'cannot decode image {path!r}: {err}') from err
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageReadError(f'cannot decode image {path!r}: not a valid image')
    return img
