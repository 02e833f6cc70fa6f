"""Checkpoints: written atomically, read with one-line errors, checked for their classes, and
resuming a run from one.

A checkpoint is a dict ``{'meta': ..., 'state_dict': ..., 'optimizer': ..., ['scaler': ...]}``.
``meta`` holds ``epoch`` and ``iter`` (both counted as completed), ``seed``, ``config`` (its text),
``CLASSES``, ``mmdet_version``, ``time`` and ``rng_states`` (one ``get_rng_state()`` per rank).
Every file is first written to a hidden temporary file ``.<name>.tmp<pid>`` in the same
directory and then moved over the final name with ``os.replace``, so ``epoch_<n>.pth`` and
``latest.pth`` are always either the previous complete file or the new complete one. SIGINT and
SIGTERM are held while a checkpoint is written and delivered once it is complete, so a stopped
run leaves no temporary file behind; those of killed runs are removed when training starts.
"""

import contextlib
import os
import re
import shutil
import signal
import threading
import time
import warnings
from collections import OrderedDict

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.runner import weights_to_cpu
from mmengine.runner.checkpoint import load_state_dict

import mmdet
from mmdet.core.evaluation import class_mismatch
from mmdet.utils import get_rng_state, set_rng_state

# the first bytes of torch.save's zip format and of its legacy pickle format
_TORCH_MAGIC = (b'PK\x03\x04', b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19')
_TEMP_FILE = re.compile(r'^\..+\.pth\.tmp(\d+)$')
_EPOCH_FILE = re.compile(r'^epoch_(\d+)\.pth$')


class CheckpointReadError(OSError):
    """A checkpoint file is empty, truncated, damaged or not a PyTorch checkpoint."""


def unwrap(model):
    """The detector inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _first_sentence(err):
    """``'<error type>: <first sentence>'`` of ``err`` (torch's messages run to a paragraph)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines if 'Unsupported global' in line), lines[0] if lines else '')
    return f'{type(err).__name__}: {detail.split(". ")[0]}' if detail else type(err).__name__


def _why_unreadable(filename, err):
    with open(filename, 'rb') as f:
        head = f.read(len(_TORCH_MAGIC[1]))
    if not head:
        return 'the file is empty'
    if not head.startswith(_TORCH_MAGIC):
        return f'it is not a PyTorch checkpoint (it starts with {head[:8]!r})'
    if 'Weights only load failed' in str(err):
        return (
            'it holds objects other than tensors and plain containers, which are not loaded '
            f'(torch.load weights_only=True; {_first_sentence(err)})'
        )
    return f'it is truncated or damaged ({_first_sentence(err)})'


def read_checkpoint(filename):
    """The dict saved in ``filename``, tensors on the CPU. Raises ``FileNotFoundError`` or a one-line
    ``CheckpointReadError`` naming the file when it is empty, truncated, damaged or not a checkpoint."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    try:
        checkpoint = torch.load(filename, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises assorted errors on bad files
        raise CheckpointReadError(
            f'checkpoint {filename!r} cannot be read: {_why_unreadable(filename, err)}'
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointReadError(
            f'checkpoint {filename!r} holds a {type(checkpoint).__name__}, not a checkpoint dict'
        )
    return checkpoint


def load_weights(model, checkpoint, strict=False, logger=None):
    """Put ``checkpoint['state_dict']`` (or the dict itself), ``module.`` prefixes removed, into ``model``."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = OrderedDict((re.sub(r'^module\.', '', key), value) for key, value in state_dict.items())
    load_state_dict(model, state_dict, strict=strict, logger=logger)


def load_checkpoint(model, filename, strict=False, logger=None):
    """Read ``filename`` (``read_checkpoint``), load its weights into ``model``; return the checkpoint."""
    checkpoint = read_checkpoint(filename)
    load_weights(model, checkpoint, strict=strict, logger=logger)
    return checkpoint


def check_classes(checkpoint, filename, classes, dataset='the dataset'):
    """Raise ``ValueError`` unless ``checkpoint['meta']['CLASSES']`` are ``classes`` in the same order.

    Label ``i + 1`` of the model is class ``i`` of its ``CLASSES``: with other names or another
    order every detection would be counted as the wrong class. A checkpoint without classes in
    its meta cannot be checked: a warning says so.
    """
    trained = (checkpoint.get('meta') or {}).get('CLASSES')
    if not trained:
        warnings.warn(
            f'checkpoint {filename!r} has no meta.CLASSES: cannot check that its classes are the '
            f'{len(classes)} classes of {dataset} in the same order',
            stacklevel=2,
        )
        return
    mismatch = class_mismatch(trained, classes, 'the checkpoint', dataset)
    if mismatch:
        raise ValueError(
            f'checkpoint {filename!r} does not fit {dataset}: {mismatch}. Its detections would be '
            "counted as the wrong classes: set the dataset's classes option to the checkpoint's "
            'meta.CLASSES (in their order), or use the checkpoint trained for this dataset'
        )


@contextlib.contextmanager
def hold_signals(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold ``signums`` during the body and deliver them after it (main thread only; elsewhere
    signals cannot be handled and the body runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in signums
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for signum in received:
            signal.raise_signal(signum)


def _atomic_write(write, filename):
    """Call ``write(tmp_path)`` then move the temporary file over ``filename``."""
    dirname, basename = os.path.split(os.path.abspath(filename))
    tmp = os.path.join(dirname, f'.{basename}.tmp{os.getpid()}')
    try:
        write(tmp)
        os.replace(tmp, filename)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(work_dir):
    """Remove the ``.<name>.pth.tmp<pid>`` files in ``work_dir`` of processes that no longer run
    (or of this process, which is not writing one now); return their names."""
    stale = []
    for name in sorted(os.listdir(work_dir)):
        match = _TEMP_FILE.match(name)
        if match and (int(match.group(1)) == os.getpid() or not _is_running(int(match.group(1)))):
            os.remove(os.path.join(work_dir, name))
            stale.append(name)
    return stale


def save_training_checkpoint(work_dir, model, optimizer, epoch, iteration, cfg, config_text, scaler=None):
    """Write ``work_dir/epoch_<epoch>.pth`` and refresh ``work_dir/latest.pth`` (both atomically,
    SIGINT / SIGTERM held until both are written).

    Every rank must call it (the RNG states are gathered from all ranks); rank 0 writes.
    ``config_text`` is ``cfg.pretty_text`` (slow to produce, so computed once by the caller).
    Returns the path of the epoch checkpoint.
    """
    rng_states = all_gather_object(get_rng_state()) if get_dist_info()[1] > 1 else [get_rng_state()]
    filename = os.path.join(work_dir, f'epoch_{epoch}.pth')
    if get_dist_info()[0] != 0:
        return filename
    detector = unwrap(model)
    meta = dict(
        epoch=epoch,
        iter=iteration,
        seed=cfg.get('seed'),
        config=config_text,
        CLASSES=list(getattr(detector, 'CLASSES', None) or []),
        mmdet_version=mmdet.__version__,
        time=time.asctime(),
        rng_states=rng_states,
    )
    checkpoint = dict(
        meta=meta, state_dict=weights_to_cpu(detector.state_dict()), optimizer=optimizer.state_dict()
    )
    if scaler is not None:
        checkpoint['scaler'] = scaler.state_dict()
    with hold_signals():
        _atomic_write(lambda tmp: torch.save(checkpoint, tmp), filename)  # mmengine's save logs deprecations
        _atomic_write(lambda tmp: shutil.copyfile(filename, tmp), os.path.join(work_dir, 'latest.pth'))
    return filename


def find_resume_checkpoint(work_dir, logger):
    """``(path, checkpoint)`` of the newest readable checkpoint of ``work_dir`` for ``--auto-resume``:
    ``latest.pth``, else the ``epoch_<n>.pth`` of the highest ``n`` that reads; ``(None, None)``
    when there is none at all.

    Each unreadable file is reported through ``logger``; ``CheckpointReadError`` listing them
    when none reads.
    """
    epochs = [name for name in os.listdir(work_dir) if _EPOCH_FILE.match(name)]
    epochs.sort(key=lambda name: int(_EPOCH_FILE.match(name).group(1)), reverse=True)
    names = (['latest.pth'] if os.path.isfile(os.path.join(work_dir, 'latest.pth')) else []) + epochs
    failures = []
    for name in names:
        path = os.path.join(work_dir, name)
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointReadError as err:
            logger.warning(f'auto-resume: {err}; trying an older checkpoint')
            failures.append(str(err))
            continue
        if failures:
            logger.warning(f'auto-resume: resuming from {path}, the newest checkpoint that reads')
        return path, checkpoint
    if failures:
        raise CheckpointReadError(
            f'auto-resume: no checkpoint in {work_dir!r} can be read ({"; ".join(failures)}); remove '
            'them to start afresh, or pass --resume-from a good checkpoint'
        )
    return None, None


def resume_training(filename, model, optimizer, scaler=None, logger=None, checkpoint=None):
    """Load model, optimiser (lrs included), grad scaler and RNG state; return the checkpoint's meta.

    ``checkpoint``: the dict already read from ``filename`` (default: read it). Restores this
    rank's RNG state (rank 0's when the world size changed), so the next iteration draws the
    same random numbers as the uninterrupted run. The model's ``CLASSES``, when it has them,
    must be the checkpoint's (``check_classes``).
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(filename)
    missing = [key for key in ('meta', 'optimizer') if key not in checkpoint]
    if missing:
        raise KeyError(
            f'{filename}: cannot resume from it, it has no {" or ".join(missing)} (a published model?)'
        )
    if getattr(unwrap(model), 'CLASSES', None):
        check_classes(checkpoint, filename, unwrap(model).CLASSES, 'the training set')
    load_weights(unwrap(model), checkpoint, strict=True, logger=logger)
    optimizer.load_state_dict(checkpoint['optimizer'])
    if scaler is not None and 'scaler' in checkpoint:
        scaler.load_state_dict(checkpoint['scaler'])
    meta = checkpoint['meta']
    rank, world_size = get_dist_info()
    rng_states = meta['rng_states']
    set_rng_state(rng_states[rank] if len(rng_states) == world_size else rng_states[0])
    return meta
