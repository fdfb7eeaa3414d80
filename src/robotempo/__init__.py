"""robotempo: LeRobot-format datasets (v2.1, v3.0) served to PyTorch in place, with per-task speed labels."""

from robotempo.dataset import ItemBatch, LeRobotDataset, LeRobotDatasetMetadata, collate
from robotempo.distributed import open_once
from robotempo.errors import RobotempoError
from robotempo.mixture import Mixture
from robotempo.prompt import SpeedDropout, format_speed_prompt, validate_speed_setting
from robotempo.sampling import Sampler
from robotempo.splits import split_episodes
from robotempo.stats import compute_stats
from robotempo.validation import validate_dataset

__version__ = "0.1.0"
__all__ = [
    "ItemBatch",
    "LeRobotDataset",
    "LeRobotDatasetMetadata",
    "Mixture",
    "RobotempoError",
    "Sampler",
    "SpeedDropout",
    "collate",
    "compute_stats",
    "format_speed_prompt",
    "open_once",
    "split_episodes",
    "validate_dataset",
    "validate_speed_setting",
]
