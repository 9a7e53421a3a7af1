"""python -m cnnlab (also what torchrun runs)."""

from cnnlab.cli import main

if __name__ == "__main__":
    main()
