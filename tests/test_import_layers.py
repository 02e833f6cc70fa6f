"""The subpackages form layers: each one, imported alone in a fresh interpreter, loads only the
layers below it (so no import circle between subpackages, whatever the import order), and
filling the registries loads no training or inference code."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'sparse_resnet_101_faster_rcnn_sparse_loss_weight_0_2.py'
# Lowest first: a layer may import the layers before it, never those after it. mmdet.utils sits
# above the model zoo: the GFLOPs counter reads the backbones' depth table and the config checks
# read the registered components' arguments.
LAYERS = ('registry', 'ops', 'core', 'datasets', 'models', 'utils', 'apis')
REGISTERS = re.compile(r'^@\w+\.register_module\(', re.MULTILINE)
SNIPPETS = {
    **{layer: f'import mmdet.{layer}' for layer in LAYERS},
    'load_config': f'from mmdet.utils import load_config\nload_config({str(CONFIG)!r})',
}
REPORT = '\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith("mmdet."))))'


@pytest.fixture(scope='module')
def loaded():
    """{snippet name: the ``mmdet.*`` modules loaded after running it in a fresh interpreter};
    the interpreters run side by side."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, '-W', 'ignore', '-c', code + REPORT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for name, code in SNIPPETS.items()
    }
    modules = {}
    for name, proc in procs.items():
        out, err = proc.communicate()
        assert proc.returncode == 0, f'{SNIPPETS[name]!r} failed in a fresh interpreter:\n{err}'
        modules[name] = set(json.loads(out.splitlines()[-1]))
    return modules


def _layers(modules):
    return {name.split('.')[1] for name in modules} & set(LAYERS)


@pytest.mark.parametrize('layer', LAYERS)
def test_a_layer_imports_only_the_layers_below_it(loaded, layer):
    layers = _layers(loaded[layer])
    above = layers & set(LAYERS[LAYERS.index(layer) + 1 :])
    assert layer in layers and not above, f'importing mmdet.{layer} loads the higher layers {sorted(above)}'


def _registering_modules():
    """Every mmdet module whose source registers a component with a decorator."""
    names = set()
    for path in (REPO / 'mmdet').rglob('*.py'):
        if REGISTERS.search(path.read_text()):
            names.add('.'.join(path.relative_to(REPO).with_suffix('').parts))
    return names


def test_loading_a_config_fills_every_registry_without_the_training_code(loaded):
    """load_config checks the keys against the registries, filled by registry.import_all()."""
    expected = _registering_modules()
    assert {'mmdet.models.backbones.sparse_resnet', 'mmdet.utils.log_hooks'} <= expected  # the scan works
    assert expected <= loaded['load_config'], f'not registered: {sorted(expected - loaded["load_config"])}'
    assert 'apis' not in _layers(loaded['load_config'])
