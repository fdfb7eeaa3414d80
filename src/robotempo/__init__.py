"""robotempo: LeRobot-format robot datasets (v2.1, v3.0) served to PyTorch in place, with per-task speed labels."""

__version__ = "0.1.0"
