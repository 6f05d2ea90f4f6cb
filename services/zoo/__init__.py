"""The zoo worker."""
