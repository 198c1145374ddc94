"""Likeness GPU library: base-model loading and the tiny offline Stable Diffusion pipeline."""
