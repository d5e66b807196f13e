"""SpineNav computation core: CT input, analysis stages, meshes and the robot bundle.

Nothing in this package imports Qt, pyvista or any GUI toolkit (a test checks it), so the same
code runs from the command line, the desktop app and the tests.
"""

__version__ = "0.1.0"
