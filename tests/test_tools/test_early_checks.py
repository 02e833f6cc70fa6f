"""Bad input to the tools is found before the work starts and reported as one line (issue 22):
training values, --cfg-options types, --out, the class count, get_flops --resolution; damaged
checkpoints, annotations and result files end the tools with ``<tool>: error: <message>``."""

import json
import os
import subprocess
import sys

import pytest
import torch
from tool_helpers import REPO, TOY_CONFIG, load_tool, tiny_sparse_detector_config

from mmdet.datasets.demo import make_demo_data
from mmdet.utils.cli import TRACEBACK_ENV, run_tool


def one_line_error(capsys, tool, argv, usage=False):
    """Run ``tools/<tool>.py`` in-process as from the command line; return the message of its one
    error line: ``run_tool``'s (exit status 1), or with ``usage`` argparse's (usage, then the line)."""
    with pytest.raises(SystemExit) as exit_info:
        run_tool(load_tool(tool).main, argv)
    if usage:
        assert exit_info.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
    else:  # sys.exit(line): Python prints it to stderr and exits with status 1
        line = exit_info.value.code
        assert isinstance(line, str)
    assert '\n' not in line
    return line.split(': error: ', 1)[1]


@pytest.fixture
def demo(tmp_path):
    """``demo(num_classes=5, train_ann='train.json', test_ann='val.json', pretrained=None)``: the
    path of a tiny SparseResNet config with these ``bbox_head.num_classes``, annotation files (in
    ``demo.root/annotations``) and ``model.pretrained``, on a demo set of 2 + 2 images."""
    root = make_demo_data(str(tmp_path / 'demo'), seed=0, num_train=2, num_val=2)

    def write(num_classes=5, train_ann='train.json', test_ann='val.json', pretrained=None):
        tiny = tmp_path / 'tiny.py'
        tiny.write_text(tiny_sparse_detector_config())
        config = tmp_path / f'demo_{num_classes}.py'
        config.write_text(
            f'_base_ = [{str(tiny)!r}]\n'
            f'model = dict(pretrained={pretrained!r}, bbox_head=dict(num_classes={num_classes}))\n'
            'data = dict(\n'
            f"    train=dict(ann_file='{root}/annotations/{train_ann}', img_prefix='{root}/train/'),\n"
            f"    test=dict(ann_file='{root}/annotations/{test_ann}', img_prefix='{root}/val/'),\n"
            ')\n'
            'total_epochs = 1\n'
        )
        return str(config)

    write.root = root
    return write


@pytest.mark.parametrize(
    'option, message',
    [
        ('total_epochs=0', 'total_epochs=0, expected an integer >= 1 (the number of epochs to train)'),
        (
            'checkpoint_config.interval=0',
            'checkpoint_config.interval=0, expected an integer >= 1 (save a checkpoint every N epochs)',
        ),
        ('log_config.interval=0', 'log_config.interval=0, expected an integer >= 1 (log every N iterations)'),
        ('optimizer.momentum=1.5', 'optimizer.momentum=1.5, expected a number in [0, 1] (the SGD momentum)'),
    ],
)
def test_train_refuses_bad_training_values_before_writing_anything(tmp_path, capsys, option, message):
    work = tmp_path / 'work'
    argv = [str(TOY_CONFIG), '--work-dir', str(work), '--device', 'cpu', '--cfg-options', option]
    assert one_line_error(capsys, 'train', argv) == f'config {TOY_CONFIG}: {message}'
    assert not work.exists()


def test_a_string_for_a_number_in_cfg_options_names_the_key_and_the_type(tmp_path, capsys):
    argv = [str(TOY_CONFIG), '--work-dir', str(tmp_path / 'w'), '--cfg-options', 'optimizer.lr=0.02x']
    assert one_line_error(capsys, 'train', argv) == (
        "--cfg-options optimizer.lr='0.02x': expected a number, as its current value 0.02"
    )
    argv = [str(TOY_CONFIG), str(tmp_path / 'missing.pth'), '--cfg-options', 'data.test.num_images=five']
    assert one_line_error(capsys, 'test', argv) == (
        "--cfg-options data.test.num_images='five': expected a number, as its current value 5"
    )


def test_test_checks_out_before_reading_anything(tmp_path, capsys):
    missing = str(tmp_path / 'missing.py')  # neither config nor checkpoint is read before --out
    folder = tmp_path / 'results.pkl'
    folder.mkdir()
    message = one_line_error(capsys, 'test', [missing, missing, '--out', str(folder)])
    assert message == f'--out {str(folder)!r} cannot be written: it is a directory'
    out = tmp_path / 'nowhere' / 'r.pkl'
    message = one_line_error(capsys, 'test', [missing, missing, '--out', str(out)])
    assert message == f'--out {str(out)!r} cannot be written: its folder {str(out.parent)!r} does not exist'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['results.pkl']


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_test_refuses_an_out_folder_without_write_permission(tmp_path, capsys):
    folder = tmp_path / 'read_only'
    folder.mkdir(mode=0o500)
    out = str(folder / 'r.pkl')
    message = one_line_error(capsys, 'test', [str(TOY_CONFIG), 'ckpt.pth', '--out', out])
    assert message == f'--out {out!r} cannot be written: permission denied'


def test_test_checks_the_class_count_before_the_checkpoint_and_the_model(demo, tmp_path, capsys):
    config = demo(num_classes=81)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not read: the class count is checked first')
    assert one_line_error(capsys, 'test', [config, str(garbage), '--device', 'cpu']) == (
        'model.bbox_head.num_classes=81 does not fit data.test: its 4 classes need num_classes=5 '
        '(the classes and the background)'
    )


def test_train_checks_the_class_count_before_building_the_model(demo, tmp_path, capsys):
    # building the model would fail first on its missing ImageNet checkpoint
    config = demo(num_classes=81, pretrained=str(tmp_path / 'missing_imagenet.pth'))
    argv = [config, '--work-dir', str(tmp_path / 'work'), '--device', 'cpu']
    assert one_line_error(capsys, 'train', argv).startswith(
        'model.bbox_head.num_classes=81 does not fit data.train: its 4 classes need num_classes=5'
    )


def damaged_checkpoint(tmp_path, kind):
    """A checkpoint file that is ``kind``: empty, truncated, random bytes or text."""
    path = tmp_path / f'{kind}.pth'
    if kind == 'truncated':
        torch.save(dict(state_dict=dict(w=torch.arange(1000.0))), path)
        path.write_bytes(path.read_bytes()[:700])
    else:
        path.write_bytes({'empty': b'', 'random': os.urandom(256), 'text': b'epoch 12, mAP 40.1\n'}[kind])
    return str(path)


WHY = {
    'empty': 'the file is empty',
    'truncated': 'it is truncated or damaged',
    'random': 'it is not a PyTorch checkpoint',
    'text': "it is not a PyTorch checkpoint (it starts with b'epoch 12')",
}


@pytest.mark.parametrize('kind', sorted(WHY))
def test_a_damaged_checkpoint_is_one_line_in_test(tmp_path, capsys, kind):
    path = damaged_checkpoint(tmp_path, kind)
    message = one_line_error(capsys, 'test', [str(TOY_CONFIG), path, '--device', 'cpu'])
    assert message.startswith(f'checkpoint {path!r} cannot be read: {WHY[kind]}')


@pytest.mark.parametrize('kind, option', [('truncated', '--resume-from'), ('random', 'load_from')])
def test_a_damaged_checkpoint_is_one_line_in_train(tmp_path, capsys, kind, option):
    path = damaged_checkpoint(tmp_path, kind)
    argv = [str(TOY_CONFIG), '--work-dir', str(tmp_path / 'work'), '--device', 'cpu']
    argv += [option, path] if option.startswith('--') else ['--cfg-options', f'{option}={path}']
    assert one_line_error(capsys, 'train', argv).startswith(
        f'checkpoint {path!r} cannot be read: {WHY[kind]}'
    )
    gone = str(tmp_path / 'gone.pth')
    argv[2], argv[-1] = str(tmp_path / 'work2'), argv[-1].replace(path, gone)
    key = 'resume_from' if option == '--resume-from' else option
    assert one_line_error(capsys, 'train', argv) == f'{key}: checkpoint {gone!r} does not exist'
    assert not (tmp_path / 'work2').exists()  # found before the work dir is made


def edit_annotations(root, split, name, edit):
    """Copy ``annotations/<split>.json`` of the demo set to ``annotations/<name>`` with ``edit`` applied."""
    with open(os.path.join(root, 'annotations', f'{split}.json')) as f:
        coco = json.load(f)
    edit(coco)
    with open(os.path.join(root, 'annotations', name), 'w') as f:
        json.dump(coco, f)
    return name


def test_bad_annotations_are_one_line_in_the_tools(demo, tmp_path, capsys):
    no_width = edit_annotations(
        demo.root, 'val', 'no_width.json', lambda coco: coco['images'][1].pop('width')
    )
    config = demo(test_ann=no_width)
    unread = tmp_path / 'unread.pth'  # the annotations are checked before the checkpoint is read
    unread.write_text('garbage')
    message = one_line_error(capsys, 'test', [config, str(unread), '--device', 'cpu'])
    assert message == (
        f"ann_file '{demo.root}/annotations/no_width.json': image id 2 ('val_00002.jpg') has no width; "
        'every image needs file_name, width and height'
    )

    def string_bbox(coco):
        coco['annotations'][0]['bbox'] = '27,235,21,21'

    config = demo(train_ann=edit_annotations(demo.root, 'train', 'string_bbox.json', string_bbox))
    message = one_line_error(
        capsys, 'train', [config, '--work-dir', str(tmp_path / 'work'), '--device', 'cpu']
    )
    assert message == (
        f"ann_file '{demo.root}/annotations/string_bbox.json': annotation id 1 of image 1 "
        "('train_00001.jpg') has bbox '27,235,21,21'; expected four numbers [x, y, w, h]"
    )


def test_a_garbage_result_file_is_one_line_in_coco_eval(demo, tmp_path, capsys):
    garbage = tmp_path / 'results.pkl'
    garbage.write_bytes(os.urandom(64))
    ann = f'{demo.root}/annotations/val.json'
    message = one_line_error(capsys, 'coco_eval', [str(garbage), '--ann', ann])
    assert message.startswith(f'result file {str(garbage)!r} is not a readable result pickle')


def test_get_flops_refuses_resolutions_below_the_stride(capsys):
    config = str(REPO / 'configs' / 'demo' / 'resnet_demo.py')
    for resolution in ('0', '-100', '31'):
        message = one_line_error(capsys, 'get_flops', [config, '--resolution', resolution], usage=True)
        assert message == (
            f'argument --resolution: expected a short side of at least 32 pixels (the backbone stride), '
            f'got {resolution}'
        )
    assert load_tool('get_flops').main([config, '--resolution', '32']) > 0


def test_the_traceback_is_there_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, '1')
    with pytest.raises(FileNotFoundError, match='config file .*nope.py.* does not exist'):
        run_tool(load_tool('train').main, [str(tmp_path / 'nope.py')])


@pytest.mark.parametrize('tool', ['train', 'test', 'get_flops'])
def test_the_tools_print_one_line_from_any_folder(tmp_path, tool):
    """``python tools/<tool>.py`` run elsewhere (the package is installed): the error line, status 1."""
    missing = str(tmp_path / 'missing.py')
    argv = [missing, missing] if tool == 'test' else [missing]
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', TRACEBACK_ENV)}
    done = subprocess.run(
        [sys.executable, str(REPO / 'tools' / f'{tool}.py'), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (
        1,
        f'{tool}.py: error: config file {missing!r} does not exist\n',
    )
