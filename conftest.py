"""Loads the project's pytest plugin everywhere: the real servers as fixtures and the two test tiers
(likeness_dev.testing)."""

pytest_plugins = ["likeness_dev.testing"]
