"""``python -m bench``: run every benchmark."""

from bench.memory import main

main()
