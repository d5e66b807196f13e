"""SpineNav desktop app (`spinenav-gui`): displays what `inference` computes; computes nothing itself.

Layout (napari/Slicer style):
- `display/`  Qt-free display helpers: voxel axes → screen orientation, window/level, label colours;
- `state/`    the session model (loaded CT, labels, selection, crosshair) emitting Qt signals;
- `views/`    widgets: main window, slice views, 3D view, vertebra table;
- `workers/`  background jobs (loading, meshing) that report progress and honour a cancel token.
"""
