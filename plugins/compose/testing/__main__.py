import sys

from mldeploy.plugins.compose.testing import _main

sys.exit(_main(sys.argv[1:]))
