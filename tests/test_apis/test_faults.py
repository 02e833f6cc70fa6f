"""Faults that must not lose files or give silently wrong results (issue 22): tools/demo.py and
its inputs (case 4), class order (5), signals during a checkpoint save (6), unreadable
checkpoints and --auto-resume (7), and an empty training set."""

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn
from torch.utils.data import DataLoader

from mmdet.apis import init_detector
from mmdet.apis.checkpoint import (
    CheckpointReadError,
    check_classes,
    find_resume_checkpoint,
    load_checkpoint,
    read_checkpoint,
    remove_stale_temp_files,
    resume_training,
    save_training_checkpoint,
)
from mmdet.apis.train import train_detector
from mmdet.datasets import ImageReadError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SAMPLE = REPO / '..' / 'shared' / 'data' / 'real_sample' / 'images'
ECHO_CONFIG = str(HERE / 'echo_config.py')
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f'real sample images not found at {SAMPLE}')


class TinyDetector(nn.Module):
    """``w * x + b`` fitted to 1: the smallest model ``train_detector`` can train."""

    CLASSES = ('cat', 'dog')

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, img, img_metas, return_loss=True):
        return dict(loss_fit=(self.fc(img) - 1).pow(2).mean())


def _collate(samples):
    return dict(img=torch.stack(samples), img_metas=[{} for _ in samples])


def _train(work_dir, total_epochs, logger, num_samples=4, **cfg):
    """``total_epochs`` of ``TinyDetector`` (2 iterations an epoch), auto-resuming in ``work_dir``."""
    defaults = dict(
        work_dir=str(work_dir),
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
        lr_config=dict(policy='step', step=[100]),
        total_epochs=total_epochs,
        log_config=dict(interval=1, hooks=[]),
        checkpoint_config=dict(interval=1),
        auto_resume=True,
        seed=0,
    )
    cfg = Config(dict(defaults, **cfg))
    samples = [torch.full((1,), float(i)) for i in range(num_samples)]
    loader = DataLoader(samples, batch_size=2, collate_fn=_collate)
    return train_detector(TinyDetector(), loader, cfg, logger=logger)


@pytest.fixture
def logger():
    return logging.getLogger('test_faults')


# ---- case 4: tools/demo.py never writes over an input, and skips unreadable images


def _demo_tool():
    spec = importlib.util.spec_from_file_location('tool_demo', REPO / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def echo_checkpoint(tmp_path):
    path = tmp_path / 'echo.pth'
    classes = ['circle', 'square', 'triangle', 'ring']
    torch.save(dict(meta=dict(CLASSES=classes), state_dict=init_detector(ECHO_CONFIG).state_dict()), path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for name in ('chelsea.jpg', 'coffee.jpg', 'rocket.jpg'):
        shutil.copy(SAMPLE / name, folder / name)
    return folder


@needs_sample
def test_demo_refuses_to_draw_over_its_inputs(tmp_path, photos, echo_checkpoint):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    (tmp_path / 'link').symlink_to(photos)
    for img, out_dir in [
        (photos, photos),
        (photos, tmp_path / 'link'),  # the same folder under another name
        (photos / 'coffee.jpg', photos),  # one image, drawn into its own folder
    ]:
        with pytest.raises(ValueError, match=r"would overwrite the input image '.*\.jpg' with its drawing"):
            _demo_tool().main([str(img), ECHO_CONFIG, echo_checkpoint, '--out-dir', str(out_dir)])
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


@needs_sample
def test_demo_skips_unreadable_images_and_summarises(tmp_path, photos, echo_checkpoint, capsys):
    (photos / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')  # sorted first of the four
    (photos / 'empty.png').write_bytes(b'')
    out_dir = tmp_path / 'drawn'
    with pytest.warns(UserWarning) as caught:
        _demo_tool().main(
            [str(photos), ECHO_CONFIG, echo_checkpoint, '--out-dir', str(out_dir), '--device', 'cpu']
        )
    assert sorted(p.name for p in out_dir.iterdir()) == ['chelsea.jpg', 'coffee.jpg', 'rocket.jpg']
    skipped = [str(w.message) for w in caught if 'skipped' in str(w.message)]
    assert len(skipped) == 2 and 'broken.jpg' in skipped[0] and 'empty.png' in skipped[1]
    assert (
        f'drew 3 of 5 images into {out_dir}; skipped 2 unreadable: broken.jpg, empty.png'
        in capsys.readouterr().out
    )
    for name in ('chelsea.jpg', 'coffee.jpg', 'rocket.jpg'):
        os.remove(photos / name)
    with (
        pytest.warns(UserWarning),
        pytest.raises(ImageReadError, match=r'none of the 2 images in .* could be read'),
    ):
        _demo_tool().main([str(photos), ECHO_CONFIG, echo_checkpoint, '--out-dir', str(out_dir)])


# ---- case 5: a checkpoint's classes must be the dataset's, in the same order


def test_class_order_is_checked():
    coco_like = dict(meta=dict(CLASSES=['person', 'bicycle', 'car']))
    check_classes(coco_like, 'model.pth', ('person', 'bicycle', 'car'))  # the same: nothing to say
    with pytest.raises(
        ValueError,
        match=r"checkpoint 'model.pth' does not fit the dataset: the same 3 class names in another order: "
        r"class 2 is 'bicycle' in the checkpoint but 'car' in the dataset\. "
        r".*set the dataset's classes option",
    ):
        check_classes(coco_like, 'model.pth', ('person', 'car', 'bicycle'))
    with pytest.raises(
        ValueError, match=r"only in the checkpoint: \['car'\]; only in the dataset: \['bus'\]"
    ):
        check_classes(coco_like, 'model.pth', ('person', 'bicycle', 'bus'))
    with pytest.warns(UserWarning, match=r"'bare.pth' has no meta.CLASSES: cannot check"):
        check_classes(dict(state_dict={}), 'bare.pth', ('person',))


def test_resume_refuses_a_checkpoint_of_other_classes(tmp_path, logger):
    _train(tmp_path, 1, logger)
    model = TinyDetector()
    model.CLASSES = ('dog', 'cat')
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match=r"class 1 is 'cat' in the checkpoint but 'dog' in the training set"):
        resume_training(str(tmp_path / 'epoch_1.pth'), model, optimizer)


# ---- case 6: signals during a checkpoint save; temporary files of killed runs

# saves a checkpoint whose config sends this process SIGTERM while torch.save is writing it
TERM_DURING_SAVE = """
import os, signal, sys
import torch
from mmdet.apis.checkpoint import save_training_checkpoint

class TermWhilePickled:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        return (int, (7,))

model = torch.nn.Linear(2, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
save_training_checkpoint(sys.argv[1], model, optimizer, 1, 3, dict(seed=TermWhilePickled()), 'cfg')
print('SIGTERM was lost')
"""


def test_sigterm_during_a_save_leaves_complete_files_and_no_temporary_one(tmp_path):
    run = subprocess.run(
        [sys.executable, '-c', TERM_DURING_SAVE, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == -signal.SIGTERM, run.stderr[-2000:]  # still terminated by the signal
    assert 'SIGTERM was lost' not in run.stdout
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'latest.pth']  # no .epoch_1.pth.tmp<pid>
    # complete: it loads (int(7) is a pickled call, which weights_only refuses)
    assert torch.load(tmp_path / 'latest.pth', weights_only=False)['meta']['seed'] == 7


class InterruptWhilePickled:
    """Pickled as 7, after sending this process SIGINT (torch.save is writing then)."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return (int, (7,))


def test_sigint_during_a_save_is_delivered_after_it(tmp_path):
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint(
            str(tmp_path), model, optimizer, 1, 3, dict(seed=InterruptWhilePickled()), 'cfg'
        )
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'latest.pth']
    assert torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['meta']['seed'] == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_training_removes_temporary_files_of_dead_processes(tmp_path, logger, caplog):
    dead, alive = _dead_pid(), os.getppid()
    names = [f'.epoch_3.pth.tmp{dead}', f'.latest.pth.tmp{dead}', f'.epoch_4.pth.tmp{alive}', '.notes.tmp1']
    for name in names:
        (tmp_path / name).write_bytes(b'partial')
    with caplog.at_level(logging.WARNING, logger='test_faults'):
        _train(tmp_path, 1, logger)
    assert (
        f"removed 2 temporary files of interrupted checkpoint saves: ['{names[0]}', '{names[1]}']"
        in caplog.text
    )
    assert sorted(os.listdir(tmp_path)) == sorted([names[2], names[3], 'epoch_1.pth', 'latest.pth'])
    (tmp_path / f'.epoch_5.pth.tmp{os.getpid()}').write_bytes(b'')  # not being written by this process
    assert remove_stale_temp_files(str(tmp_path)) == [f'.epoch_5.pth.tmp{os.getpid()}']


# ---- case 7: unreadable checkpoints give one line; --auto-resume falls back to an older one


def _good_checkpoint(path):
    torch.save(dict(meta=dict(epoch=1), state_dict=nn.Linear(1, 1).state_dict()), path)
    return path.read_bytes()


@pytest.mark.parametrize(
    'make, why',
    [
        (lambda p: p.write_bytes(b''), r'the file is empty'),
        (
            lambda p: p.write_text('epoch: 1\nweights: none\n'),
            r"it is not a PyTorch checkpoint \(it starts with b'epoch: 1'\)",
        ),
        (lambda p: p.write_bytes(np.random.default_rng(1).bytes(300)), r'it is not a PyTorch checkpoint'),
        (lambda p: p.write_bytes(_good_checkpoint(p)[:300]), r'it is truncated or damaged \(RuntimeError: '),
        (
            lambda p: torch.save(dict(meta=np.zeros(2)), p),
            r'it holds objects other than tensors .*Unsupported global',
        ),
        (lambda p: torch.save(torch.zeros(2), p), None),
    ],
)
def test_unreadable_checkpoint_gives_one_line_naming_the_file(tmp_path, make, why):
    path = tmp_path / 'model.pth'
    make(path)
    message = (
        rf"checkpoint '.*model.pth' cannot be read: {why}" if why else 'holds a Tensor, not a checkpoint dict'
    )
    with pytest.raises(CheckpointReadError, match=message) as info:
        load_checkpoint(nn.Linear(1, 1), str(path))
    err = info.value  # no chained torch / zip traceback
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert '\n' not in str(err)


def test_demo_and_inference_name_an_unreadable_checkpoint(tmp_path):
    (tmp_path / 'model.pth').write_bytes(b'')
    with pytest.raises(CheckpointReadError, match=r"'.*model.pth' cannot be read: the file is empty"):
        init_detector(ECHO_CONFIG, str(tmp_path / 'model.pth'))


def test_auto_resume_falls_back_to_the_newest_epoch_that_reads(tmp_path, logger, caplog):
    _train(tmp_path, 3, logger)
    (tmp_path / 'latest.pth').write_bytes((tmp_path / 'latest.pth').read_bytes()[:1000])  # truncated
    (tmp_path / 'epoch_3.pth').write_bytes(b'')
    with caplog.at_level(logging.INFO, logger='test_faults'):
        _train(tmp_path, 4, logger)
    assert 'latest.pth' in caplog.text and 'cannot be read: it is truncated or damaged' in caplog.text
    assert 'epoch_3.pth' in caplog.text and 'cannot be read: the file is empty' in caplog.text
    assert (
        f'auto-resume: resuming from {tmp_path / "epoch_2.pth"}, the newest checkpoint that reads'
        in caplog.text
    )
    assert f'resumed from {tmp_path / "epoch_2.pth"} at epoch 2, iteration 4' in caplog.text
    assert read_checkpoint(str(tmp_path / 'latest.pth'))['meta']['iter'] == 8  # epochs 3 and 4 retrained


def test_auto_resume_fails_clearly_when_no_checkpoint_reads(tmp_path, logger):
    _train(tmp_path, 1, logger)
    for name in ('latest.pth', 'epoch_1.pth'):
        (tmp_path / name).write_text('garbage')
    with pytest.raises(
        CheckpointReadError, match=r"auto-resume: no checkpoint in '.*' can be read \(checkpoint .*latest.pth"
    ):
        _train(tmp_path, 2, logger)
    fresh = tmp_path / 'fresh'
    fresh.mkdir()
    assert find_resume_checkpoint(str(fresh), logger) == (None, None)  # nothing to resume: start afresh


# ---- case 1, last line of defence: an empty training loader writes nothing


def test_empty_training_loader_refuses_to_start(tmp_path, logger):
    _train(tmp_path, 1, logger)
    latest = (tmp_path / 'latest.pth').read_bytes()
    with pytest.raises(
        ValueError, match=r'the training data loader is empty \(0 images\): nothing to train on'
    ):
        _train(tmp_path, 2, logger, num_samples=0, auto_resume=False)
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'latest.pth']
    assert (tmp_path / 'latest.pth').read_bytes() == latest
