pytest_plugins = ["likeness_cli.testing"]
