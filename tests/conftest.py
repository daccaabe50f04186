pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.gitrepos",
]
