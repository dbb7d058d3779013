"""Jobs for the RQ baseline: nothing but RQ's own cost per job."""


def noop() -> None:
    """Do nothing: what is measured is fetching, running and recording the job."""
