"""``python -m packager``: the same command line as ``triton-packager``."""

from packager.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="triton-packager")
