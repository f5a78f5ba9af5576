"""``python -m swarmd`` is the ``swarmd`` command."""

from swarmd.cli import main

if __name__ == "__main__":
    main()
