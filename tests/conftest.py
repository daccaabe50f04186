pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.gitrepos",
    "tests.fixtures.history_script",
    "tests.fixtures.sandbox",
]
