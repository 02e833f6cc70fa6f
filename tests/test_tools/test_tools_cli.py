"""tools/train.py, tools/test.py and tools/publish_model.py on the toy config (the torchrun
scripts run the real demo config in test_demo_e2e.py)."""

import hashlib
import json
import os

import pytest
import torch
from tool_helpers import REPO, TOY_CONFIG, load_tool

from mmdet.core.evaluation import load_results
from mmdet.utils.work_dir_lock import WorkDirLockedError, work_dir_lock


def test_train_then_test_single_process(tmp_path, capsys):
    work = tmp_path / 'work'
    load_tool('train').main(
        [str(TOY_CONFIG), '--work-dir', str(work), '--seed', '3', '--validate', '--device', 'cpu',
         '--cfg-options', 'total_epochs=1']
    )  # fmt: skip
    assert {'epoch_1.pth', 'latest.pth', 'toy_config.py'} <= set(os.listdir(work))
    out = tmp_path / 'results.pkl'
    load_tool('test').main([str(TOY_CONFIG), str(work / 'latest.pth'), '--out', str(out), '--eval', 'bbox'])
    saved = load_results(str(out))  # with the image ids and classes, for tools/coco_eval.py
    assert saved.img_ids == [0, 1, 2, 3, 4] and saved.classes == ('thing', 'other')
    results = saved.results
    assert [float(r[0][0, 0]) for r in results] == [0, 1, 2, 3, 4]
    assert 'bbox_mAP: 1.0' in capsys.readouterr().out
    assert json.loads((tmp_path / 'results_metrics.json').read_text())['bbox_mAP'] == 1.0
    assert not (tmp_path / 'results_density.json').exists()  # the toy backbone has no density
    with pytest.raises(ValueError, match='--dtype bf16: ToyDetector has no inference_in'):
        load_tool('test').main([str(TOY_CONFIG), str(work / 'latest.pth'), '--dtype', 'bf16'])

    # the same weights saved with the classes in another order: refused before any inference
    checkpoint = torch.load(work / 'latest.pth', weights_only=False)
    checkpoint['meta']['CLASSES'] = ['other', 'thing']
    torch.save(checkpoint, tmp_path / 'swapped.pth')
    with pytest.raises(ValueError, match="class 1 is 'other' in the checkpoint but 'thing' in data.test"):
        load_tool('test').main(
            [str(TOY_CONFIG), str(tmp_path / 'swapped.pth'), '--out', str(tmp_path / 'x.pkl')]
        )
    assert not (tmp_path / 'x.pkl').exists()


def test_unknown_cfg_option_is_an_error(tmp_path):
    train = load_tool('train')
    with pytest.raises(KeyError, match=r"optimizer has no key 'lrr'; did you mean 'optimizer.lr'"):
        train.main([str(TOY_CONFIG), '--work-dir', str(tmp_path), '--cfg-options', 'optimizer.lrr=0.1'])
    with pytest.raises(
        KeyError,
        match=r"data.train has no key 'num_image' and its type 'ToyDataset' takes no such argument; "
        r"did you mean 'data.train.num_images'",
    ):
        train.main([str(TOY_CONFIG), '--cfg-options', 'data.train.num_image=2'])
    with pytest.raises(KeyError, match=r'log_config.hooks is a list of 2 items; .5. is not a valid index'):
        train.main([str(TOY_CONFIG), '--cfg-options', 'log_config.hooks.5.type=X'])
    assert not os.listdir(tmp_path)


def test_cfg_options_merge_into_lists_and_nested_keys():
    from mmdet.utils import load_config

    options = {'lr_config.step': [1, 2], 'log_config.hooks.0.type': 'X', 'seed': 5, 'fp16.enabled': True}
    cfg = load_config(str(TOY_CONFIG), options)
    assert cfg.lr_config.step == [1, 2] and cfg.lr_config.warmup == 'linear'
    assert cfg.log_config.hooks[0].type == 'X' and cfg.log_config.hooks[1].type == 'TensorboardLoggerHook'
    assert cfg.seed == 5 and cfg.fp16 == dict(enabled=True)  # fp16 = None in the runtime base


def test_missing_files_and_bad_launcher(tmp_path):
    with pytest.raises(FileNotFoundError, match='config file .*nope.py.* does not exist'):
        load_tool('train').main([str(tmp_path / 'nope.py')])
    with pytest.raises(FileNotFoundError, match='checkpoint .*missing.pth.* does not exist'):
        load_tool('test').main([str(TOY_CONFIG), str(tmp_path / 'missing.pth')])
    for key in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        os.environ.pop(key, None)
    with pytest.raises(RuntimeError, match='needs the torchrun environment; RANK, LOCAL_RANK'):
        load_tool('train').main([str(TOY_CONFIG), '--launcher', 'pytorch', '--device', 'cpu'])


def test_publish_model(tmp_path):
    ckpt = tmp_path / 'in.pth'
    torch.save(
        dict(
            meta=dict(epoch=3, CLASSES=['a'], rng_states=[dict(torch=torch.zeros(2))]),
            state_dict=dict(w=torch.ones(2)),
            optimizer=dict(state={}, param_groups=[]),
        ),
        ckpt,
    )
    final = load_tool('publish_model').publish(str(ckpt), str(tmp_path / 'model.pth'))
    data = open(final, 'rb').read()
    assert os.path.basename(final) == f'model-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    assert sorted(os.listdir(tmp_path)) == ['in.pth', os.path.basename(final)]
    published = torch.load(final, weights_only=True)
    assert set(published) == {'meta', 'state_dict'}
    assert published['meta'] == dict(epoch=3, CLASSES=['a'])
    assert torch.equal(published['state_dict']['w'], torch.ones(2))


def test_cfg_options_may_add_an_argument_of_the_registered_type():
    from mmdet.utils import load_config

    config = str(REPO / 'configs/demo/sparse_resnet_demo.py')
    cfg = load_config(config, {'model.backbone.eval_T': 0.1, 'model.backbone.dcn': None})
    assert cfg.model.backbone.eval_T == 0.1  # SparseResNet's own argument
    assert 'dcn' in cfg.model.backbone  # ResNet's, reached through SparseResNet's **kwargs
    with pytest.raises(KeyError, match=r"no key 'eval_t' and its type 'SparseResNet' takes no such argument"):
        load_config(config, {'model.backbone.eval_t': 0.1})
    with pytest.raises(KeyError, match=r"model.neck has no key 'foo' and its type 'FPN'"):
        load_config(config, {'model.neck.foo': 1})


def test_train_refuses_a_work_dir_in_use_before_writing_to_it(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    with work_dir_lock(str(work)):  # another training holds it (flock: per open file, so in-process too)
        with pytest.raises(
            WorkDirLockedError, match=rf'work dir .* is in use by another training \(process {os.getpid()}'
        ):
            load_tool('train').main([str(TOY_CONFIG), '--work-dir', str(work), '--device', 'cpu'])
        assert sorted(p.name for p in work.iterdir()) == ['.train.lock']  # no log, no config copy
