"""``python -m mlops_stack.cli``: the ``mlops`` command without its console script."""

from mlops_stack.cli.app import main

if __name__ == "__main__":
    main()
