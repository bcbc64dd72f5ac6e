"""One module per ``kdtune`` command (see :mod:`kdtune.cli`)."""
