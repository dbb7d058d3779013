"""SMS and email provider adapters."""
