from .config import config_notes, load_config, merge_cfg_options
from .device import to_device
from .dist import dist_env, init_dist_env, resolve_device
from .flops import backbone_gflops, backbone_gflops_from_cfg
from .logger import get_root_logger
from .seeding import get_rng_state, set_random_seed, set_rng_state

__all__ = [
    'backbone_gflops',
    'backbone_gflops_from_cfg',
    'config_notes',
    'dist_env',
    'get_rng_state',
    'get_root_logger',
    'init_dist_env',
    'load_config',
    'merge_cfg_options',
    'resolve_device',
    'set_random_seed',
    'set_rng_state',
    'to_device',
]
