import sys

from imitlib.cli import main

sys.exit(main())
