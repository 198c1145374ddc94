pytest_plugins = ["likeness_dev.testing"]
