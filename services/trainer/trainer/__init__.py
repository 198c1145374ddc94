"""Likeness trainer: per-subject LoRA training."""
