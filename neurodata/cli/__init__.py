"""The ``neurodata`` command line: one module per verb in this package."""
