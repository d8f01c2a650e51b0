import sys

from catalens.cli import main

sys.exit(main())
