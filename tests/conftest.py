pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.proxy",
    "tests.fixtures.gateway",
]
