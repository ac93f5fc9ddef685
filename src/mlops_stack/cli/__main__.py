"""``python -m mlops_stack.cli``: the ``mlops`` command without its console script."""

from mlops_stack.cli.command_tree import main

if __name__ == "__main__":
    main()
