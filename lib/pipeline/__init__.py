"""End-to-end pipelines over the training and test scripts (ablations, quick start)."""
