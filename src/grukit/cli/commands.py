"""Placeholder: commands are added here as modules land."""
