"""Test tooling shipped with neurodata: mutation fuzzing of every decoder (``fuzz``)."""
