from . import log_hooks  # noqa: F401  (registers the log hooks)
from .checkpoint import resume_training, save_training_checkpoint, unwrap
from .inference import inference_detector, init_detector, show_result
from .test import density_report, format_density_table, predict_dataset
from .train import StepLrSchedule, build_optimizer, parse_losses, train_detector

__all__ = [
    'StepLrSchedule',
    'build_optimizer',
    'density_report',
    'format_density_table',
    'inference_detector',
    'init_detector',
    'parse_losses',
    'predict_dataset',
    'resume_training',
    'save_training_checkpoint',
    'show_result',
    'train_detector',
    'unwrap',
]
