"""HumanEval: 164 Python functions to complete, scored by running their unit tests in a bubblewrap sandbox."""
