"""``python -m metarep.cli``: the same as the ``metarep`` console script."""

from . import main

main()
