import faulthandler
import sys

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.proxy",
    "tests.fixtures.gateway",
]

# A hung test prints every thread's stack before pytest-timeout ends it.
faulthandler.enable(file=sys.stderr)
