from .checkpoint import resume_training, save_training_checkpoint, unwrap
from .inference import inference_detector, init_detector, show_result
from .test import density_report, format_density_table, predict_dataset
from .train import parse_losses, train_detector

__all__ = [
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
