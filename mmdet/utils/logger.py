"""The process-wide logger: mmengine's ``MMLogger`` (rank 0 prints and writes the log file)."""

from mmengine.logging import MMLogger


def get_root_logger(log_file=None, log_level='INFO'):
    """An ``MMLogger`` named ``mmdet`` writing to ``log_file`` (if given) on rank 0.

    One instance per log file, so two runs in one process never share a file handler.
    """
    return MMLogger.get_instance(
        f'mmdet:{log_file}', logger_name='mmdet', log_file=log_file, log_level=log_level
    )
