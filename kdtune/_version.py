"""kdtune's version, in a module of its own: modules that record it need not import the package's public face
(``kdtune/__init__.py`` loads :mod:`kdtune.api` on first use, which would close an import cycle)."""

__version__ = "0.1.0"
