"""The scheduler's commands: ``dispatch-due``, ``worker``, ``scheduler``."""

commands: list = []

from .retention import retention_command

commands.append(retention_command)
