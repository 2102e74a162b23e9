"""`python -m gradwise ...` is the `gradwise` command; torchrun starts it: `torchrun ... -m gradwise train CONFIG`."""

from gradwise.cli import main

if __name__ == "__main__":
    main()
