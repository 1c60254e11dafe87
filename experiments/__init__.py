"""experiments: the paper's experiments as one-command recipes with generated reports."""
