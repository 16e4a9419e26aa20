import sys

from geowarn.cli import main

sys.exit(main())
