"""Scoring result files against ground truth (GOT-10k and LaSOT protocols), tables and plots."""
