"""The scheduler's commands: ``dispatch-due``, ``worker``, ``scheduler``."""

commands: list = []
