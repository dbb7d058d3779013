"""When messages go: reminder policy, quiet hours, dispatch, the send job."""
