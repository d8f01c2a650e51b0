import sys

from catalens.ops.cli import main

sys.exit(main())
