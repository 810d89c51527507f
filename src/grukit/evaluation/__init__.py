"""Scoring a trained model against simple baselines: metrics, baselines and plots."""
