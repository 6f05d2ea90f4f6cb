"""The infer worker."""
